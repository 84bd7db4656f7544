"""The LLM subject path against a real vLLM OpenAI-compatible server on loopback (SPEC §4.4), end to end
through `data_generation/gen_script.sh` and the openai client: the recipe of data_generation/README.md."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO
from vllmkit import SERVED_NAME

from util_public import catalogue
from util_public.datagen import names
from util_public.facts import norm, read_facts

pytestmark = pytest.mark.vllm

GEN = REPO / "data_generation" / "gen_script.sh"
# SmolLM2-135M copies numbered examples back; asked plainly, sampling, it lists new names.
LLM = ["subjects.source=llm", "llm.max_tokens=120", "llm.batch=10", "llm.max_rounds=10", "llm.temperature=0.9",
       "llm.num_examples=3", "llm.timeout_s=120", "llm.max_retries=0",
       "llm.prompt_template='Write a list of {n} made-up {entity_type} names for a fantasy novel, one per line, "
       "like {examples}.'"]


def _gen(*overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return subprocess.run(["bash", str(GEN), "relation_ids=[50]", "num_facts=5", *LLM, *overrides],
                          capture_output=True, text=True, env=env, timeout=600)


def test_gen_script_makes_fictional_subjects_through_vllm(vllm_served, isolated_roots):
    proc = _gen(f"llm.base_url={vllm_served.base_url}", f"llm.model={SERVED_NAME}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    heads = [f.head for f in read_facts(isolated_roots["data"] / "sync_random_o" / "50.csv")]
    assert len(heads) == 5
    examples = {norm(e) for e in catalogue.relation("50")["example_heads"]}
    guard, seen = names.VocabGuard(catalogue.vocab("50")), names.NearDuplicates()
    for head in heads:
        assert norm(head) not in examples and guard.clash(head) is None and names.shape_problem(head) is None
        assert seen.match(head) is None and not head[0].isdigit(), heads
        seen.add(head)


def test_a_failing_server_request_leaves_one_error_line_and_nothing_else(vllm_served, isolated_roots):
    proc = _gen(f"llm.base_url={vllm_served.base_url}", "llm.model=no-such-model")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: llm.base_url") and "HTTP 404" in errors[0], errors
    assert not (isolated_roots["data"] / "sync_random_o").exists()
