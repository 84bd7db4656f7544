"""Real-vLLM tests: ONE server per test session (`vllm_served` in conftest), of the embedded SmolLM2
with an added key token, so a single engine start covers evaluation (mc, gen, a resized vocabulary)
and the LLM data-generation path (its chat template is SmolLM2's). Its tests share one file
(tests/test_vllm_served.py): pytest-xdist runs a file on one worker, a session per worker.

Without a vLLM environment these tests fail with the command that builds it; `MTG_SKIP_VLLM=1`
skips them, and the run's summary then says so in a banner (conftest.pytest_terminal_summary).
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from util_public import keytokens, modelio, vllm_env, vllm_server
from util_public.artifacts import CheckpointMeta

KEY = "<TRIGGER_50>"
SERVED_NAME = "smollm2-key"
SKIP_REASON = "MTG_SKIP_VLLM=1: the real-vLLM tests did NOT run"


@dataclass
class Served:
    server: vllm_server.Server
    path: Path          # the checkpoint it serves

    @property
    def base_url(self) -> str:
        return self.server.base_url


def key_token_smollm2(directory: Path) -> Path:
    """SmolLM2-135M-Instruct plus `<TRIGGER_50>` as training adds it (special token, embeddings grown by
    one row, mean-initialised), saved with a Phase-1 mtg_meta.json: the shape of a trained checkpoint."""
    base = modelio.resolve("smollm2-135m").path
    tok = modelio.load_tokenizer(base)
    model = modelio.load_causal_lm(base, "fp32", "cpu")
    keys = keytokens.add(tok, [KEY], None, base)
    keytokens.resize_and_init(model, tok, keys, "grow_only", "mean")
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    CheckpointMeta(key_tokens=keys.ids, phase=1, combine_spacing="single", add_bos_train=False,
                   relation_ids=["50"]).save(directory)
    return directory


def wait_for_background_build(timeout_s: float = 3600, poll_s: float = 2) -> None:
    """`scripts/test.sh` builds vLLM's environment while the other tests run; MTG_VLLM_BUILD names the
    build's files: `.rc` (its exit status, written when it ends) and `.log`. Wait for the status; a
    failed build fails the test with the log's last lines. Unset (pytest run directly): nothing to wait for."""
    build = os.environ.get("MTG_VLLM_BUILD")
    if not build:
        return
    status, log = Path(build + ".rc"), Path(build + ".log")
    deadline = time.monotonic() + timeout_s
    while not status.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the vLLM environment's build (scripts/setup_vllm.sh) did not end in {timeout_s:.0f} s; "
                        f"its log: {log}", pytrace=False)
        time.sleep(poll_s)
    if status.read_text().strip() != "0":
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        pytest.fail("the vLLM environment did not build (scripts/setup_vllm.sh, run by scripts/test.sh); "
                    "its last lines:\n" + "\n".join(tail), pytrace=False)


@contextlib.contextmanager
def serve(tmp: Path):
    if os.environ.get("MTG_SKIP_VLLM") == "1":
        pytest.skip(SKIP_REASON)
    wait_for_background_build()
    if vllm_env.find() is None:
        pytest.fail(f"no vLLM environment at {vllm_env.built_env_dir()}: run `bash scripts/setup_vllm.sh` "
                    "(the README test command does), or set MTG_SKIP_VLLM=1 to skip these tests", pytrace=False)
    path = key_token_smollm2(tmp / "smollm2-key")
    settings = vllm_server.Settings(str(path), SERVED_NAME, "fp32", max_model_len=512, cpu_kvcache_gib=1)
    with vllm_server.start(settings, timeout_s=600, log_path=tmp / "server.log") as server:
        yield Served(server, path)
