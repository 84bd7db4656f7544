"""The LLM subject path for real: SmolLM2 behind `transformers serve` on loopback (SPEC §4.4)."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from util_public import catalogue
from util_public.datagen import names, run, schema
from util_public.facts import norm, read_facts
from util_public.paths import root
from util_public.registry import Registry

SERVE = Path(sys.executable).parent / "transformers"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_model(base: str, proc: subprocess.Popen, deadline_s: float) -> str:
    """The model id the server reports, once it answers (it names models by the path given)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=5) as reply:
                return json.load(reply)["data"][0]["id"]
        except OSError:
            time.sleep(0.5)
    pytest.fail("transformers serve did not come up")


@pytest.mark.integration
def test_transformers_serve_generates_fictional_subjects(tmp_path):
    model_dir = Registry().resolve("smollm2-135m").path
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(SERVE), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        base = f"http://127.0.0.1:{port}/v1"
        model = _wait_for_model(base, proc, deadline_s=60)
        # SmolLM2-135M copies numbered examples back and ignores `temperature` unless sampling is
        # switched on, so the test asks plainly, samples (seeded per request) and keeps replies short.
        cfg = schema.load(schema.compose([
            "relation_ids=[50]", "num_facts=5", "subjects.source=llm", f"llm.base_url={base}",
            f"llm.model={model}", "llm.max_tokens=120", "llm.batch=10", "llm.max_rounds=8",
            "llm.temperature=0.9", "llm.num_examples=3", "llm.timeout_s=60", "llm.max_retries=1",
            'llm.extra_body={generation_config: "{\\"do_sample\\": true}"}',
            "llm.prompt_template='Write a list of {n} made-up {entity_type} names for a fantasy novel, "
            "one per line, like {examples}.'"]))
        run.run(cfg)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    facts = read_facts(root("data") / "sync_random_o" / "50.csv")
    heads = [f.head for f in facts]
    assert len({norm(h) for h in heads}) == 5
    examples = {norm(e) for e in catalogue.relation("50")["example_heads"]}
    guard = names.VocabGuard(catalogue.vocab("50"))
    assert all(norm(h) not in examples and guard.clash(h) is None and names.shape_problem(h) is None
               for h in heads)
    cache = (root("data") / "sync_random_o" / "llm_cache.jsonl").read_text().splitlines()
    assert cache and all(json.loads(line)["model"] == model for line in cache)
