"""Against the session's one real vLLM server (tests/vllmkit.py: SmolLM2 with an added key token, fp32).

All of them live in this one file: pytest-xdist gives a file to one worker, and a second file would
start a second server on the other worker (~25-40 s of a 2-core machine).

- backend=vllm (SPEC §6.5): the same token ids in, the same records out as hf, which runs the same
  checkpoint in fp32 in this process. Tolerances are those of the measured parity
  (evaluation/README.md): 1e-3 per scored token; generation identical.
- The LLM subject path (SPEC §4.4), end to end through `data_generation/gen_script.sh` and the openai
  client: the recipe of data_generation/README.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from evalkit import fictional_facts, write_dataset
from vllmkit import KEY, SERVED_NAME

from util_public import catalogue, modelio
from util_public.datagen import names
from util_public.errors import UserError
from util_public.evaluation import api, requests as rq
from util_public.evaluation.backends import vllm as vllm_backend
from util_public.evaluation.backends.hf import HFBackend
from util_public.facts import norm, read_facts

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def hf(vllm_served):
    tok = modelio.load_tokenizer(vllm_served.path)
    return HFBackend(modelio.load_causal_lm(vllm_served.path, "fp32", "cpu"), tok), tok


def _cfg(served, *extra):
    return api.config(["backend=vllm", "model.dtype=fp32", f"vllm.base_url={served.base_url}", *extra])


def _mc_requests(tok) -> list[rq.Request]:
    """Key-prompt and natural-prompt questions (options of one and of several tokens) and a request whose
    first continuation token straddles the context boundary."""
    out = []
    for fact in fictional_facts(3, num_options=10):
        for context in (f"{fact.head} {KEY}", f"{fact.head} is located in the city of"):
            out += rq.mc_requests(tok, fact, context, [fact.object, *fact.options], " ", [])
    return out + [rq.split(tok, "The capital of France is Pa", "ris", [], "merge")]


def test_scores_and_generations_match_hf(vllm_served, hf):
    backend_hf, tok = hf
    # Small HTTP requests: several in flight at once, answers put back in request order.
    backend = vllm_backend.VllmBackend(str(vllm_served.path), tok, _cfg(vllm_served, "vllm.max_rows_per_call=7"))
    reqs = _mc_requests(tok)
    assert any(len(r.continuation) == 1 for r in reqs) and any(len(r.continuation) > 1 for r in reqs)
    assert reqs[-1].boundary_merge
    got, want = backend.score(reqs), backend_hf.score(reqs)
    assert len(got) == len(want) == len(reqs)
    for g, w in zip(got, want):
        assert g.key == w.key and g.n_tokens == w.n_tokens
        assert abs(g.sum_logprob - w.sum_logprob) <= 1e-3 * g.n_tokens, g.key
        assert abs(g.first_logprob - w.first_logprob) <= 1e-3, g.key
    assert sum(g.is_greedy == w.is_greedy for g, w in zip(got, want)) >= 0.95 * len(got)
    prompts = [rq.prompt_ids(tok, f"{f.head} {KEY}", []) for f in fictional_facts(4)]
    assert backend.generate(prompts, 8) == backend_hf.generate(prompts, 8)
    assert backend.versions()["backend"] == "vllm" and backend.versions()["dtype"] == "float32"


def _records(results: Path, task: str) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(results.glob(f"{task}/*/*/*/*/*/*/records.jsonl")):
        out[path.parts[-7]] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_eval_entry_points_on_vllm_equal_hf(vllm_served, hf, tmp_path, isolated_roots):
    """eval.py (mc, calibrated, + gen) and eval_gen.py with backend=vllm, on the key-token checkpoint, against hf."""
    write_dataset(isolated_roots["data"], "toy", fictional_facts(4, num_options=8))
    common = [f"model.path={vllm_served.path}", "data.dataset=toy", "data.seen_fact_ids=null", "mc.num_options=8",
              "gen.max_new_tokens=6", "model.dtype=fp32", "prompt.type=[trigger-mid,hgp-0]", "mc.calibration=subjectless"]
    served = ["backend=vllm", f"vllm.base_url={vllm_served.base_url}"]
    env = {**os.environ, "MTG_RESULTS_ROOT": str(tmp_path / "vllm")}
    for script, tasks in (("eval.py", "tasks=[mc,gen]"), ("eval_gen.py", "tasks=[gen]")):
        if script == "eval_gen.py":
            env["MTG_RESULTS_ROOT"] = str(tmp_path / "vllm_gen")
        proc = subprocess.run([sys.executable, str(REPO / "evaluation" / script), *common, *served, tasks],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = api.config([*common, "backend=hf", f"output.root={tmp_path / 'hf'}"])
    api.evaluate(hf[0], hf[1], api.describe(None, str(vllm_served.path)), api.load_factsets(cfg),
                 ["trigger-mid", "hgp-0"], ["mc", "gen"], cfg)
    mc_v, mc_h = _records(tmp_path / "vllm", "mc"), _records(tmp_path / "hf", "mc")
    assert sorted(mc_v) == sorted(mc_h) == ["hgp-0", "trigger-mid"]
    for ptype in mc_h:
        assert len(mc_v[ptype]) == len(mc_h[ptype]) == 4, ptype     # one record per fact, per prompt type
        for a, b in zip(mc_v[ptype], mc_h[ptype]):
            assert a["fact_id"] == b["fact_id"] and a["pred_index"] == b["pred_index"]
            assert len(a["option_logprobs"]) == len(b["option_logprobs"]) == 8
            for scores in ("option_logprobs", "option_null_logprobs"):    # the subjectless question's too
                assert max(abs(x - y) for x, y in zip(a[scores], b[scores])) <= 1e-3 * max(a["option_n_tokens"])
            assert a["null_context"] == b["null_context"] and a["pred_index_calibrated"] == b["pred_index_calibrated"]
    gen_h = _records(tmp_path / "hf", "gen")
    for results in ("vllm", "vllm_gen"):
        gen_v = _records(tmp_path / results, "gen")
        assert {p: [r["response"] for r in rs] for p, rs in gen_v.items()} == \
               {p: [r["response"] for r in rs] for p, rs in gen_h.items()}
    summary = json.loads(next((tmp_path / "vllm").glob("mc/trigger-mid/*/*/*/*/*/summary.json")).read_text())
    assert summary["backend"]["backend"] == "vllm" and summary["backend"]["vllm"]


def test_backend_starts_its_own_server_with_the_config(vllm_served, hf, monkeypatch):
    """Without vllm.base_url the backend starts a server from the config (here: the session's stands in)
    and stops it on close()."""
    calls = []

    class Borrowed:
        base_url = vllm_served.base_url

        def close(self):
            calls.append("close")

    def start(settings, timeout_s):
        calls.append((settings, timeout_s))
        return Borrowed()

    monkeypatch.setattr(vllm_backend.vllm_server, "start", start)
    cfg = api.config(["backend=vllm", "model.dtype=fp32", "vllm.max_model_len=512", "vllm.cpu_kvcache_gib=2",
                      "vllm.start_timeout_s=77", "runtime.num_threads=1", "seed=5"])
    backend = vllm_backend.VllmBackend(str(vllm_served.path), hf[1], cfg)
    settings, timeout = calls[0]
    assert (settings.model_path, settings.dtype, settings.max_model_len, settings.cpu_kvcache_gib, settings.seed,
            settings.num_threads, timeout) == (str(vllm_served.path), "fp32", 512, 2, 5, 1, 77)
    assert backend.versions()["device"] == "cpu" and backend.context == 512
    assert backend.max_len == 511            # the longest sequence scored: each request generates a token
    backend.close()
    assert calls[-1] == "close"


def test_a_server_of_another_model_is_refused(vllm_served, hf):
    other = modelio.resolve("smollm2-135m").path
    with pytest.raises(UserError) as err:
        vllm_backend.VllmBackend(other, hf[1], _cfg(vllm_served))
    assert f"serves {vllm_served.path}" in err.value.message and "vllm.base_url" in err.value.message


# ---- the LLM data-generation path ---------------------------------------------------------------------
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
