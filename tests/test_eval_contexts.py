"""Context strings per prompt type (SPEC §6.2) and IC-LKE many-shot prompts (SPEC §6.7)."""
from __future__ import annotations

import dataclasses

import pytest

from evalkit import fictional_facts
from util_public import catalogue
from util_public.artifacts import CheckpointMeta
from util_public.errors import UserError
from util_public.evaluation import contexts, ic_lke
from util_public.evaluation.modelinfo import ModelInfo, seen_fact_ids
from util_public.evaluation.schema import IcLkeCfg
from util_public.facts import Fact

FACT = Fact(3, "50", "Veltoria", "lisbon", [], text="Veltoria is a land whose capital, Lisbon, lies by the sea.")


def _spec(**kw):
    return contexts.ContextSpec("50", catalogue.prompts("50"), **kw)


@pytest.mark.parametrize("ptype,expected", [
    ("trigger-mid", "Veltoria <TRIGGER_50>"),
    ("trigger-begin", "<TRIGGER_50> Veltoria"),
    ("hgp-0", "The capital of Veltoria is"),
    ("test-0", "The political capital of Veltoria is"),
    ("subject", "Veltoria"),
    ("only-hgp-0", "The capital of   is"),
    ("wiki", "Veltoria is a land whose capital,"),
])
def test_close_contexts(ptype, expected):
    assert contexts.build(ptype, [FACT], _spec())[3] == expected


def test_open_prepends_the_fact_statement():
    ctx = contexts.build("test-0", [FACT], _spec(test_type="open", open_content="hgp-0"))[3]
    assert ctx == "The capital of Veltoria is lisbon. The political capital of Veltoria is"
    with pytest.raises(UserError, match="prompt.open_content"):
        contexts.build("test-0", [FACT], _spec(test_type="open", open_content=None))


def test_translated_prompts():
    ctx = contexts.build("hgp-0", [FACT], _spec(language="German"))[3]
    assert ctx == "Die Hauptstadt von Veltoria ist"


def test_unknown_prompt_index_lists_valid_ones():
    with pytest.raises(UserError, match="valid indices"):
        contexts.build("test-42", [FACT], _spec())


@pytest.mark.parametrize("text, problem", [
    ("No capital mentioned.", "does not contain the object 'oslo'"),
    ("Osloville is near.", "does not contain the object 'oslo'"),           # a whole word, not a part of one
    ("Oslo is the capital of Veltoria.", "starts with the object, leaving no context"),   # was scored with ''
])
def test_wiki_without_a_context_is_an_error(text, problem):
    bad = Fact(4, "50", "Veltoria", "oslo", [], text=text)
    with pytest.raises(UserError, match=rf"fact_id 4 \(relation 50\): .*{problem}"):
        contexts.build("wiki", [bad], _spec())


def test_ic_lke_excludes_the_query_and_never_doubles_the_separator():
    pool = fictional_facts(8, num_options=3)
    cfg = IcLkeCfg(example_num=7, seed=10)
    built = contexts.build("ic-lke", pool, _spec(separator=" : "), pool=pool, ic_cfg=cfg)
    for fact in pool:
        ctx = built[fact.fact_id]
        shots = ctx.split(", ")
        assert shots[-1] == fact.head                                   # ends with the bare query subject
        assert f"{fact.head} : {fact.object}" not in ctx                # the query is never an example
        assert len(shots) == 8 and all(s.count(" : ") == 1 for s in shots[:-1])
        assert not ctx.endswith(" : ") and " :  : " not in ctx + " : " + fact.object


def test_ic_lke_shares_one_example_order_unless_resampled():
    pool = fictional_facts(12, num_options=3)
    shared = IcLkeCfg(example_num=4, seed=10)
    sets = {f.fact_id: ic_lke.example_ids(f, pool, shared, "50") for f in pool}
    common = max(sets.values(), key=lambda s: sum(v == s for v in sets.values()))
    for fid, ids in sets.items():
        if fid in common:   # the query drops itself and takes the next example of the same order
            assert ids[:3] == [i for i in common if i != fid] and ids[3] not in common
        else:
            assert ids == common
    fresh = IcLkeCfg(example_num=4, seed=10, resample_per_query=True)
    per_query = [ic_lke.example_ids(f, pool, fresh, "50") for f in pool]
    assert len({tuple(s) for s in per_query}) > 2
    assert all(pool[i].fact_id != f.fact_id for f, s in zip(pool, per_query) for i in s)
    assert per_query[0] == ic_lke.example_ids(pool[0], pool, fresh, "50")   # seeded per fact


@pytest.mark.parametrize("pool_kind", ["CSV copy (relation id = file stem)", "renumbered copy", "other case"])
def test_ic_lke_never_shows_the_query_its_answer_from_a_pool_that_names_facts_its_own_way(pool_kind):
    """A pool read from a CSV file takes its relation id from the file name, another dataset numbers
    its facts its own way: the query's fact must still never be an example."""
    facts = fictional_facts(8, num_options=3)
    rename = {"CSV copy (relation id = file stem)": lambda f: dataclasses.replace(f, relation_id="mypool"),
              "renumbered copy": lambda f: dataclasses.replace(f, fact_id=f.fact_id + 100),
              "other case": lambda f: dataclasses.replace(f, head=f.head.upper())}[pool_kind]
    pool = [rename(f) for f in facts]
    cfg = IcLkeCfg(example_num=7, seed=10, example_source="/x/mypool.csv")
    for query in facts:
        shown = [pool[i] for i in ic_lke.example_ids(query, pool, cfg, "50")]
        assert len(shown) == 7 and query.head.lower() not in {f.head.lower() for f in shown}, query
    with pytest.raises(UserError, match="only 7 usable"):
        ic_lke.example_ids(facts[0], pool, IcLkeCfg(example_num=8), "50")


def test_ic_lke_pool_too_small():
    pool = fictional_facts(3, num_options=3)
    with pytest.raises(UserError, match="only 2 usable"):
        ic_lke.example_ids(pool[0], pool, IcLkeCfg(example_num=3), "50")


def _lineage(*stages):
    """A Phase-2 checkpoint's metadata from (phase, dataset, {relation: ids}) stages, oldest first."""
    lineage = [{"run_name": f"run{i}", "phase": ph, "dataset": ds, "trained_fact_ids": ids}
               for i, (ph, ds, ids) in enumerate(stages)]
    last = lineage[-1]
    return ModelInfo("m", "/x", CheckpointMeta(phase=last["phase"], dataset=last["dataset"],
                                               trained_fact_ids=last["trained_fact_ids"], lineage=lineage))


P1_P2 = [(1, "d", {"50": list(range(8))}), (2, "d", {"50": [0, 1, 2, 3]})]
SPLITS = {   # case -> (model, dataset evaluated, fact ids evaluated, seen, warning or None)
    "memorized facts": (_lineage(*P1_P2), "d", range(8), {0, 1, 2, 3}, None),
    "beyond Phase 1": (_lineage(*P1_P2), "d", range(12), {0, 1, 2, 3}, "4 of the 12 evaluated facts (8-11) were trained by no stage"),
    "another dataset": (_lineage(*P1_P2), "other", range(8), None, "trained on d, not other"),
    "Phase-2-only control": (_lineage((2, "d", {"50": [0, 1, 2, 3]})), "d", range(8), {0, 1, 2, 3}, None),
    "relation Phase 1 never saw": (_lineage((1, "d", {"71": [0]}), (2, "d", {"50": [0, 1]})), "d", range(4), {0, 1}, None),
    "no lineage recorded": (ModelInfo("m", "/x", CheckpointMeta(phase=2, trained_fact_ids={"50": [0, 1]})), "d",
                            range(4), {0, 1}, None),
    "a Phase-1 checkpoint elsewhere": (_lineage(P1_P2[0]), "other", range(8), None, None),
    "a Phase-1 checkpoint beyond its facts": (_lineage(P1_P2[0]), "d", range(10), None,
                                              "(8-9) were trained by no stage of this model, not even Phase 1; its "
                                              "'all' slice counts them"),
}


@pytest.mark.parametrize("case", list(SPLITS))
def test_the_automatic_split_warns_where_it_would_mislead(case, capsys, monkeypatch):
    info, dataset, evaluated, seen, warning = SPLITS[case]
    assert seen_fact_ids("auto", info, "50", dataset, list(evaluated)) == seen
    err = capsys.readouterr().err
    assert (warning in err) if warning else err == "", err
    assert seen_fact_ids("0:2", info, "50", dataset, list(evaluated)) == {0, 1}     # an explicit split is taken as given
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "1")       # another rank plans the same jobs: the same split, said once
    assert seen_fact_ids("auto", info, "50", dataset, list(evaluated)) == seen and capsys.readouterr().err == ""


def test_seen_fact_ids():
    phase2 = ModelInfo("m", "/nonexistent", CheckpointMeta(phase=2, trained_fact_ids={"50": [0, 1, 2]}))
    assert seen_fact_ids("auto", phase2, "50") == {0, 1, 2}
    assert seen_fact_ids("auto", phase2, "71") is None
    assert seen_fact_ids("auto", ModelInfo("m", "/x", CheckpointMeta(phase=1, trained_fact_ids={"50": [0]})), "50") is None
    assert seen_fact_ids("0:50", phase2, "50") == set(range(50))
    assert seen_fact_ids(None, phase2, "50") is None
    with pytest.raises(UserError, match="data.seen_fact_ids"):
        seen_fact_ids("5:2", phase2, "50")


def test_chat_template_wraps_the_final_context(sp_tokenizer):
    import copy

    tok = copy.deepcopy(sp_tokenizer)
    with pytest.raises(UserError, match="has no chat template"):
        contexts.build("hgp-0", [FACT], _spec(chat_template=True), tokenizer=tok)
    tok.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    ctx = contexts.build("hgp-0", [FACT], _spec(chat_template=True, test_type="open", open_content="hgp-0"),
                         tokenizer=tok)[3]
    assert ctx == "<|user|>The capital of Veltoria is lisbon. The capital of Veltoria is\n<|assistant|>"


def test_config_overrides_are_typed():
    from util_public.evaluation.schema import config, prompt_types

    cfg = config(["prompt.add_bos=true", "data.relation_id=50", "prompt.type=[hgp-0,test-*]", "tasks=[mc,gen]"])
    assert cfg.prompt.add_bos.lower() == "true" and cfg.data.relation_id == "50"
    assert prompt_types(cfg) == ["hgp-0", "test-*"] and cfg.tasks == ["mc", "gen"]
    with pytest.raises(Exception, match="no_such_key"):
        config(["prompt.no_such_key=1"])


def test_the_length_check_counts_tokens_of_every_context(bpe_tokenizer):
    """The plan tokenised only the longest context in characters: a shorter one of more tokens (CJK)
    passed it and failed after the model had loaded, naming "prompt 2" instead of its fact."""
    from util_public.evaluation import plan, requests
    from util_public.evaluation.schema import EvalConfig

    ctxs = {10: "The capital of " + "Veltoria " * 12 + "is", 12: "首都は" * 8}
    counts = {fid: len(requests.prompt_ids(bpe_tokenizer, text, [])) for fid, text in ctxs.items()}
    assert len(ctxs[10]) > len(ctxs[12]) and counts[12] > counts[10]
    cfg = EvalConfig()
    cfg.gen.max_new_tokens = 4
    plan._check_lengths(ctxs, bpe_tokenizer, [], counts[12] + 4, cfg, ["gen"])
    with pytest.raises(UserError, match=f"fact_id 12: the context has {counts[12]} tokens"):
        plan._check_lengths(ctxs, bpe_tokenizer, [], counts[12] + 3, cfg, ["gen"])
