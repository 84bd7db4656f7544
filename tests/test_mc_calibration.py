"""`mc.calibration=subjectless`: each option is also scored after the question with its subject
replaced, and `acc_calibrated` chooses by the difference (what the model prefers whatever the
subject cancels out)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from evalkit import KNOWN_MC as KNOWN, loaded_with_key
from util_public.errors import UserError
from util_public.evaluation import api, metrics, plan as planning, requests
from util_public.evaluation.records import ScoreRecord
from util_public.evaluation.schema import config


def records(values: list[float]) -> list[ScoreRecord]:
    """Two-token options whose first token holds all but 0.25 of the score."""
    return [ScoreRecord(i, v, v + 0.25, 2, 5, False) for i, v in enumerate(values)]


@pytest.mark.parametrize("raw,null,gold,pred,correct", [
    ([-1.0, -3.0, -2.0], [-0.5, -3.5, -3.0], 2, 2, True),     # option 0's lead is its prior: the gold wins
    ([-1.0, -3.0, -2.0], [-1.0, -3.0, -2.0], 2, 0, False),    # every lead a prior: a three-way tie is wrong
    ([-5.0, -1.0, -2.0], [-5.0, -1.5, -1.5], 1, 1, True),     # the raw winner keeps its lead
    ([-1.0, -2.0], [-3.0, -1.0], 0, 0, True),
])
def test_calibrated_choice_subtracts_the_subjectless_score(raw, null, gold, pred, correct):
    out = metrics.calibrated(records(raw), records(null), gold)
    assert out == {"option_null_logprobs": null, "option_null_first_logprobs": [v + 0.25 for v in null],
                   "pred_index_calibrated": pred, "correct_calibrated": correct}
    assert metrics.MC_METRICS["acc_calibrated"]([out, {**out, "correct_calibrated": False}]) == correct / 2


def test_acc_calibrated_is_null_without_calibration():
    plain = metrics.mc_fact(records([-1.0, -2.0]), 0)
    assert metrics.summarize("mc", [plain])["all"]["acc_calibrated"] is None


@pytest.fixture
def model(bpe_tokenizer, tmp_path):
    return loaded_with_key(bpe_tokenizer, tmp_path / "ckpt")


def test_the_subjectless_question_is_what_the_scorer_sees(model):
    info, loaded, tok = model
    cfg = config([*KNOWN, "mc.calibration=subjectless"])
    [summary] = api.evaluate(loaded, tok, info, planning.load_factsets(cfg), ["hgp-0"], ["mc"], cfg)
    recs = [json.loads(line) for line in (Path(summary["directory"]) / "records.jsonl").read_text().splitlines()]
    backend = api.as_backend(loaded, tok, cfg)
    assert [r["null_context"] for r in recs] == ["The capital of X is"] * 3
    for r in recs:
        assert r["context"] != r["null_context"] and r["subject"] in r["context"]
        alone = [requests.split(tok, r["null_context"], " " + o, [], key=o) for o in r["options"]]
        assert [tok.decode(q.context) + tok.decode(q.continuation) for q in alone] == \
            [f"The capital of X is {o}" for o in r["options"]]
        # batched with the piece's questions and deduplicated, each equals its option scored alone
        assert r["option_null_logprobs"] == pytest.approx([s.sum_logprob for s in backend.score(alone)], abs=1e-5)
        diff = np.array(r["option_logprobs"]) - np.array(r["option_null_logprobs"])
        assert r["correct_calibrated"] == bool(diff[r["gold_index"]] > np.delete(diff, r["gold_index"]).max())
        # the first token of each option, in either question, is what its first-token score scores
        for context, first in ((r["context"], r["option_first_logprobs"]), (r["null_context"], r["option_null_first_logprobs"])):
            heads = [requests.split(tok, context, " " + o, [], key=o) for o in r["options"]]
            heads = [requests.Request(q.key, q.context, q.continuation[:1], 1) for q in heads]
            assert all((" " + o).startswith(tok.decode(q.continuation)) for q, o in zip(heads, r["options"]))
            assert first == pytest.approx([s.sum_logprob for s in backend.score(heads)], abs=1e-5)
    assert any(n > 1 for r in recs for n in r["option_n_tokens"])       # some options spell on after it
    m = summary["metrics"]["all"]
    assert m["acc_calibrated"] == pytest.approx(np.mean([r["correct_calibrated"] for r in recs]))
    resolved = yaml.safe_load((Path(summary["directory"]) / "config.yaml").read_text())
    assert resolved["mc"]["calibration"] == "subjectless" and resolved["mc"]["null_subject"] == "X"


def test_one_null_request_per_distinct_option_of_a_piece(model):
    """The facts of one prompt type share the subjectless question: its options are scored once."""
    info, loaded, tok = model
    cfg = config([*KNOWN, "mc.calibration=subjectless"])
    [job] = planning.build(cfg, info, tok, planning.load_factsets(cfg), ["hgp-0"], ["mc"], "hf", "float32").jobs
    seen: list = []

    class Spy:
        facts_per_call = 64

        def score(self, reqs):
            seen.extend(reqs)
            return [ScoreRecord(r.key, -float(len(r.continuation)), -1.0, len(r.continuation), r.n_chars, False)
                    for r in reqs]

    from util_public.evaluation import tasks
    tasks.run_mc(job, job.selected, Spy(), tok, cfg, [])
    options = [o for f in job.selected for o in requests.mc_options(f, 4, "last", cfg.seed)[0]]
    nulls = [r for r in seen if isinstance(r.key[0], str)]
    assert len(seen) == len(options) + len(set(options)) and len(nulls) == len(set(options))
    assert {tok.decode(r.context) for r in nulls} == {"The capital of X is"}


def test_calibration_off_leaves_the_config_hash_and_the_records_as_they_were(model):
    info, _, tok = model
    hashes = {}
    for mode in ("none", "subjectless"):
        cfg = config([*KNOWN, f"mc.calibration={mode}"])
        [job] = planning.build(cfg, info, tok, planning.load_factsets(cfg), ["hgp-0"], ["mc"], "hf", "float32").jobs
        hashes[mode] = (job.config_hash, "calibration" in job.payload["mc"], job.null_contexts is None)
    assert hashes["none"][1:] == (False, True) and hashes["subjectless"][1:] == (True, False)
    assert hashes["none"][0] != hashes["subjectless"][0]


@pytest.mark.parametrize("overrides,needles", [
    (["mc.calibration=pmi"], ("mc.calibration", "'pmi'", "none, subjectless")),
    (["mc.calibration=subjectless", "mc.null_subject=''"], ("mc.null_subject", "non-empty")),
    (["mc.calibration=subjectless", "mc.null_subject=' X'"], ("mc.null_subject", "whitespace")),
    (["mc.calibration=subjectless", "prompt.test_type=open"], ("mc.calibration", "test_type=open")),
    (["mc.calibration=subjectless", "prompt.type=ic-lke"], ("mc.calibration", "'ic-lke'", "template")),
])
def test_bad_calibration_settings_name_the_key_before_any_result(model, isolated_roots, overrides, needles):
    info, _, tok = model
    cfg = config([*KNOWN, *overrides])
    with pytest.raises(UserError) as err:
        planning.build(cfg, info, tok, planning.load_factsets(cfg), None, ["mc"], "hf", "float32")
    assert all(n in err.value.message for n in needles), err.value.message
    assert not list(isolated_roots["results"].rglob("*.json"))
