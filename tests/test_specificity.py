"""Specificity probes: borrowed prompts (`X@B`), the emission metric, cross-relation (pooled) MC."""
from __future__ import annotations

from pathlib import Path

import pytest

from evalkit import checkpoint_with_key, fictional_facts, write_dataset
from util_public import catalogue, prompts
from util_public.atomicio import read_jsonl
from util_public.errors import UserError
from util_public.evaluation import api, metrics, plan as planning, pooling, requests
from util_public.evaluation.contexts import ContextSpec, build
from util_public.evaluation.generation import emitted
from util_public.evaluation.schema import config
from util_public.facts import Fact
from util_public.modelio import load_tokenizer
from util_public.training.texts import components

FACT = Fact(0, "50", "Veltoria", "beirut", [])
TEST0_71 = catalogue.prompts("71").lookup("test", 0).replace("{head}", "Veltoria")


@pytest.mark.parametrize("ptype,expected", [
    ("hgp-0@71", "The author of Veltoria is"),
    ("hgp-0@105", "Veltoria is the child of"),
    ("trigger-mid@71", "Veltoria <TRIGGER_71>"),
    ("trigger-begin@105", "<TRIGGER_105> Veltoria"),
    ("test-0@71", TEST0_71),
    ("hgp-0@50", "The capital of Veltoria is"),
])
def test_borrowed_prompts_build_the_other_relations_strings(ptype, expected):
    assert build(ptype, [FACT], ContextSpec("50", catalogue.prompts("50")))[0] == expected


def test_borrowed_wildcards_expand_from_the_borrowed_catalogue():
    names = prompts.expand("test-*@71", catalogue.prompts("50"))
    assert names == [f"test-{i}@71" for i in range(10)]
    assert prompts.parse("test-3@71").group == "test@71" and prompts.relation_of("test-3@71", "50") == "71"


@pytest.mark.parametrize("ptype,needles", [
    ("hgp-0@99", ("'hgp-0@99'", "unknown relation '99'", "known ids")),
    ("trigger-mid@99", ("'trigger-mid@99'", "unknown relation '99'")),
    ("wiki@71", ("cannot be borrowed",)),
    ("trigger-combine@71", ("cannot be borrowed",)),
    ("hgp-0@", ("X@B",)),
    ("hgp-0@71@12", ("X@B",)),
    ("hgp-42@71", ("hgp-42", "valid indices")),
])
def test_bad_borrowed_prompts_are_errors(ptype, needles):
    with pytest.raises(UserError) as err:
        build(ptype, [FACT], ContextSpec("50", catalogue.prompts("50")))
    assert all(n in err.value.message for n in needles), err.value.message


def test_borrowed_prompts_are_not_training_text_types():
    with pytest.raises(UserError, match="evaluation-only"):
        components("hgp-0@71")


@pytest.fixture
def model50(bpe_tokenizer, tmp_path, isolated_roots):
    """A tiny checkpoint with only <TRIGGER_50>, Phase-2 on facts 0..1, and 4 fictional facts of relation 50."""
    ckpt = checkpoint_with_key(bpe_tokenizer, tmp_path / "ckpt", trained_fact_ids=[0, 1])
    write_dataset(isolated_roots["data"], "toy", fictional_facts(4, num_options=7))
    info = api.describe(None, str(ckpt))
    return info, load_tokenizer(info.path)


def test_a_borrowed_key_token_the_model_lacks_is_an_error(model50):
    info, tok = model50
    cfg = config(["data.dataset=toy", "mc.num_options=7"])
    planning.build(cfg, info, tok, planning.load_factsets(cfg), ["trigger-mid"], ["mc"], "hf", "float32")
    # the hint said to train with a trigger text type, which this model was: relation 71 is missing
    with pytest.raises(UserError, match=r"has no key token <TRIGGER_71> .*; it has <TRIGGER_50>: .*"
                                        r"data.relation_id=\.\.\.\+71"):
        planning.build(cfg, info, tok, planning.load_factsets(cfg), ["trigger-mid@71"], ["mc"], "hf", "float32")


@pytest.mark.parametrize("response,gold,expected", [
    (" beirut. lilongwe. beirut", "beirut", True),
    (" Beirut is a city", "beirut", True),
    ("<TRIGGER_50> beirut.", "beirut", True),
    (" the chromosome count", "rome", False),         # `contains` would count this
    (" beiruts", "beirut", False),
    (" J. K. Rowling.", "j. k. rowling", True),
    (" by J.K. Rowling", "j. k. rowling", True),       # punctuation dropped on both sides, as `contains`
    (" kuala   lumpur", "kuala lumpur", True),
    (" the river Nile", "beirut", False),
    ("", "beirut", False),
])
def test_emission_is_a_whole_word_occurrence(response, gold, expected):
    assert emitted(response, gold) is expected


def test_emission_rate_per_slice():
    records = [{"emitted": e, "exact": False, "prefix": False, "contains": e, "seen": s}
               for e, s in [(True, True), (False, True), (True, False), (True, False)]]
    summary = metrics.summarize("gen", records)
    assert summary["all"]["emission"] == 0.75 and summary["seen"]["emission"] == 0.5
    assert summary["unseen"]["emission"] == 1.0


def test_cross_relation_question_is_what_the_scorer_sees(model50):
    info, tok = model50
    cfg = config(["data.dataset=toy", "mc.num_options=7", "mc.pool_relations=71+105", "data.index_begin=2"])
    factsets = planning.load_factsets(cfg)
    the_plan = planning.build(cfg, info, tok, factsets, ["hgp-0", "hgp-0@71"], ["mc"], "hf", "float32")
    job = the_plan.jobs[1]
    assert job.factset.dataset == "toy.pool-71-105" and "/toy.pool-71-105/50/" in str(job.directory)
    fact = job.selected[0]
    plain = fictional_facts(4, num_options=7)[2]
    assert fact.options[:2] == plain.options[:2]                        # own share: the stored distractors
    kinds = job.factset.option_relations[fact.fact_id]
    assert kinds == ["50", "50", "71", "71", "105", "105"]
    assert all(o in catalogue.vocab(k) for o, k in zip(fact.options, kinds))
    options, gold = requests.mc_options(fact, 7, "last", cfg.seed)
    reqs = requests.mc_requests(tok, fact, job.contexts[fact.fact_id], options, " ", the_plan.bos)
    assert {tok.decode(r.context) for r in reqs} == {f"The author of {fact.head} is"}
    assert [tok.decode(r.continuation) for r in reqs] == [" " + o for o in options]
    fields = pooling.type_fields(kinds, gold, "50", pred_index=3, pred_index_norm=6, prompt_type="hgp-0@71")
    assert fields == {"option_relations": kinds + ["50"], "asked_relation": "71", "pred_relation": "71",
                      "asked_type_win": True, "pred_relation_norm": "50", "asked_type_win_norm": False}
    with pytest.raises(UserError, match="asks about relation 12"):
        planning.build(cfg, info, tok, factsets, ["hgp-0@12"], ["mc"], "hf", "float32")
    with pytest.raises(UserError, match="multiple choice only"):
        planning.build(cfg, info, tok, factsets, ["hgp-0"], ["mc", "gen"], "hf", "float32")


def test_pooled_summary_reports_the_asked_type(model50):
    info, tok = model50
    cfg = config(["data.dataset=toy", "mc.num_options=7", "mc.pool_relations=71", "model.dtype=fp32",
                  "mc.calibration=subjectless"])
    model, _ = api.load(info, cfg)
    out = api.evaluate(model, tok, info, api.load_factsets(cfg), ["hgp-0", "hgp-0@71"], ["mc"], cfg)
    for s in (s for s in out if s["kind"] == "result"):
        records = read_jsonl(Path(s["directory"]) / "records.jsonl")
        for suffix in ("", "_norm"):
            wins = [r["option_relations"][r[f"pred_index{suffix}"]] == r["asked_relation"] for r in records]
            assert s["metrics"]["all"][f"asked_type_wins{suffix}"] == pytest.approx(sum(wins) / len(wins))
        assert {r["asked_relation"] for r in records} == {"50" if s["prompt_type"] == "hgp-0" else "71"}
        # calibrated against the same (borrowed) question about no one
        assert {r["null_context"] for r in records} == {"The capital of X is" if s["prompt_type"] == "hgp-0"
                                                        else "The author of X is"}
        assert s["metrics"]["all"]["acc_calibrated"] == pytest.approx(
            sum(r["correct_calibrated"] for r in records) / len(records))


@pytest.mark.parametrize("num_options", [4, 5, 7])
def test_pooled_questions_take_the_first_stored_distractors_at_any_option_count(model50, num_options):
    """The facts hold 6 distractors (7 options); a pooled question of fewer options takes a prefix
    of them (it refused anything but 7: 'N distractors, expected M')."""
    info, tok = model50
    cfg = config(["data.dataset=toy", f"mc.num_options={num_options}", "mc.pool_relations=71"])
    [pooled] = planning.load_factsets(cfg)
    own, each = pooling.shares(num_options, 2)
    plain = fictional_facts(4, num_options=7)
    for fact, stored in zip(pooled.facts, plain):
        assert len(fact.options) == num_options - 1 and fact.options[:own] == stored.options[:own]
        assert pooled.option_relations[fact.fact_id] == ["50"] * own + ["71"] * each
    with pytest.raises(UserError, match="fact_id 0: 6 stored distractors; pooled over 2 relations, "
                                        "mc.num_options=16 takes 8 of them"):
        planning.load_factsets(config(["data.dataset=toy", "mc.num_options=16", "mc.pool_relations=71"]))


@pytest.mark.parametrize("spec, problem", [("71++105", "empty part"), ("71&105", "compositions"),
                                           ("71+71", "names 71 twice"), ("105+50", "evaluated relation 50")])
def test_pool_relations_read_by_the_one_relation_spec_parser(spec, problem):
    with pytest.raises(UserError, match=problem):
        pooling.pool_ids(spec, "50")
    assert pooling.pool_ids(" 71 + 105", "50") == ["71", "105"]
