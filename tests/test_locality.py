"""The locality control: the known-fact catalogue, its MC questions, and the general-text perplexity."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from evalkit import checkpoint_with_key
from util_public import known, paths
from util_public.errors import UserError
from util_public.evaluation import api, plan as planning, requests, textprobe
from util_public.evaluation.schema import config
from util_public.facts import Fact, conflicts, relation_file, write_facts
from util_public.runinfo import sha256_file

MIN_FACTS = {"50": 30, "71": 30, "21": 20, "105": 20, "12": 20}


@pytest.mark.parametrize("rel", sorted(MIN_FACTS))
def test_shipped_known_facts_validate_and_get_safe_distractors(rel):
    shipped = known.load(rel)
    assert len(shipped.facts) >= MIN_FACTS[rel] and "checked by hand" in shipped.source
    generated = known.facts(rel, 100, seed=42)
    assert len(generated) == len(shipped.facts)           # every shipped fact becomes a question
    for fact, k in zip(generated, shipped.facts):
        assert len(fact.options) == 99 and (fact.head, fact.object) == (k.subject, k.object)
        assert not [o for o in fact.options for x in (k.object, k.subject, *k.also_true) if conflicts(o, x)]


@pytest.mark.parametrize("rel", sorted(MIN_FACTS))
def test_avoided_objects_are_never_options_and_every_fact_stays_a_question(rel):
    vocab = known.catalogue.read_vocab(known.catalogue.vocab_file(rel))
    avoid = vocab[::3]                                      # a third of the vocabulary, as if trained
    plain, avoiding = known.facts(rel, 20, seed=42), known.facts(rel, 20, seed=42, avoid=avoid)
    assert [(f.head, f.object) for f in avoiding] == [(f.head, f.object) for f in plain]
    assert all(len(f.options) == 19 for f in avoiding)
    assert not [o for f in avoiding for o in f.options for a in avoid if conflicts(o, a)]
    assert any(o in avoid for f in plain for o in f.options)    # the plain draw offered some of them


def write_trained(data_root: Path, dataset: str, rel: str, objects: list[str]) -> Path:
    rows = [Fact(i, rel, f"Subject{i}", o, []) for i, o in enumerate(objects)]
    return write_facts(relation_file(data_root, dataset, rel), rows)


def test_known_questions_avoiding_a_trained_dataset(isolated_roots):
    trained = ["paris", "tokyo", "lima", "oslo", "vienna", "cairo"]
    csv = write_trained(isolated_roots["data"], "mine", "50", trained)
    cfg = config(["data.dataset=known", "data.relation_id=50", "mc.num_options=20", "data.avoid_objects_of=mine"])
    [fs] = planning.load_factsets(cfg)
    assert fs.dataset == "known.untrained-mine" and csv in fs.sources and not fs.trained_split
    assert not {o for f in fs.facts for o in f.options} & set(trained)
    golds = {f.object: f for f in fs.facts}
    assert golds["paris"].options and "paris" not in golds["paris"].options    # trained golds stay questions
    [plain] = planning.load_factsets(config(["data.dataset=known", "data.relation_id=50", "mc.num_options=20"]))
    assert plain.dataset == "known" and {o for f in plain.facts for o in f.options} & set(trained)


def test_the_rehearsal_facts_are_questions_too(isolated_roots):
    """eval.py scores what data.rehearsal trains (did the base model know it?), apart from the probe."""
    trained = ["london", "minsk", "paris"]
    write_trained(isolated_roots["data"], "mine", "50", trained)
    shipped = known.load("50", known.REHEARSAL)
    [plain] = planning.load_factsets(config(["data.dataset=rehearsal", "data.relation_id=50", "mc.num_options=20"]))
    [avoiding] = planning.load_factsets(config(["data.dataset=rehearsal", "data.relation_id=50", "mc.num_options=20",
                                                "data.avoid_objects_of=mine"]))
    assert (plain.dataset, avoiding.dataset) == ("rehearsal", "rehearsal.untrained-mine")
    assert known.path("50", known.REHEARSAL) in plain.sources
    for fs in (plain, avoiding):
        assert [(f.head, f.object) for f in fs.facts] == [(k.subject, k.object) for k in shipped.facts]
        assert all(len(f.options) == 19 and f.object not in f.options for f in fs.facts)
    assert not {o for f in avoiding.facts for o in f.options} & set(trained)


@pytest.mark.parametrize("overrides,needles", [
    (["data.avoid_objects_of=mine"], ("data.avoid_objects_of", "only the real facts", "data.dataset=sync_random_o")),
    (["data.dataset=known", "data.avoid_objects_of=nope"], ("data.avoid_objects_of=nope", "no fact file")),
    (["data.dataset=known", "data.avoid_objects_of=mine", "data.relation_id=50+71"],
     ("data.avoid_objects_of=mine", "relation '71'", "no fact file")),
    (["data.dataset=known", "data.avoid_objects_of=../elsewhere"], ("data.avoid_objects_of=../elsewhere",
                                                                    "invalid name", "without '..'")),
    (["data.dataset=known", "data.avoid_objects_of=most"], ("data.avoid_objects_of=most", "fact_id 0",
                                                            "distractors possible")),
])
def test_bad_avoid_objects_of_names_the_setting(isolated_roots, overrides, needles):
    write_trained(isolated_roots["data"], "mine", "50", ["paris"])
    vocab = known.catalogue.read_vocab(known.catalogue.vocab_file("50"))
    write_trained(isolated_roots["data"], "most", "50", vocab[:-10])     # leaves too few distractors
    cfg = config(["mc.num_options=20", *overrides])
    with pytest.raises(UserError) as err:
        planning.load_factsets(cfg)
    assert all(n in err.value.message for n in needles), err.value.message


GOOD = {"subject": "France", "object": "paris"}


@pytest.mark.parametrize("content,needles", [
    ({"schema": "mtg.known/2"}, ("schema", "mtg.known/1")),
    ({"relation_id": "71"}, ("relation_id", "'71' differs from the file name '50'")),
    ({"source": " "}, ("source", "where the facts come from")),
    ({"facts": []}, ("facts", "non-empty list")),
    ({"facts": [GOOD, ["Japan", "tokyo"]]}, ("facts[1]", "expected a mapping")),
    ({"facts": [GOOD, {"subject": "Japan", "object": "tokyo", "capital": 1}]}, ("facts[1]", "unknown keys")),
    ({"facts": [GOOD, {"subject": "Japan", "object": "Tokyo"}]}, ("facts[1]: object", "lower-case", "'tokyo'")),
    ({"facts": [GOOD, {"subject": "Japan"}]}, ("facts[1]: object", "non-empty string")),
    ({"facts": [GOOD, {"subject": "france", "object": "lyon"}]}, ("facts[1]", "repeats facts[0]")),
    ({"facts": [{"subject": "A{x}", "object": "paris"}]}, ("facts[0]: subject", "'{'")),
    ({"facts": [{**GOOD, "also_true": ["paris"]}]}, ("facts[0]: also_true", "repeats the object")),
])
def test_broken_known_files_name_the_file_and_fact(tmp_path, content, needles):
    data = {"schema": "mtg.known/1", "relation_id": "50", "source": "hand-made", "facts": [GOOD], **content}
    path = tmp_path / "50.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")      # JSON is YAML
    with pytest.raises(UserError) as err:
        known.read(path)
    assert str(path) in err.value.message and all(n in err.value.message for n in needles), err.value.message


def test_unknown_relation_and_language_are_errors():
    with pytest.raises(UserError, match="no known-fact file.*known facts exist for relations"):
        planning.load_factsets(config(["data.dataset=known", "data.relation_id=7"]))
    with pytest.raises(UserError, match="English only"):
        planning.load_factsets(config(["data.dataset=known", "data.language=Spanish"]))


@pytest.fixture
def phase2_model(bpe_tokenizer, tmp_path):
    """A tiny checkpoint that claims Phase-2 training on facts 0..2 (which must not slice known facts)."""
    ckpt = checkpoint_with_key(bpe_tokenizer, tmp_path / "ckpt", trained_fact_ids=[0, 1, 2])
    info = api.describe(None, str(ckpt))
    model, tok = api.load(info, config(["model.dtype=fp32"]))
    return info, model, tok


def test_known_mc_question_is_what_the_scorer_sees(phase2_model, isolated_roots):
    info, _, tok = phase2_model
    cfg = config(["data.dataset=known", "data.relation_id=50+71", "mc.num_options=4", "data.index_end=2"])
    factsets = planning.load_factsets(cfg)
    the_plan = planning.build(cfg, info, tok, factsets, ["hgp-0"], ["mc"], "hf", "float32")
    job = the_plan.jobs[1]                                   # relation 71, fact 1
    assert job.directory.relative_to(isolated_roots["results"]).parts[:6] == ("mc", "hgp-0", "ckpt", "known", "71",
                                                                                "close")
    assert job.seen is None and job.data_fingerprint["files"]    # no seen/unseen for facts never trained
    fact = job.selected[1]
    options, gold = requests.mc_options(fact, 4, "last", cfg.seed)
    reqs = requests.mc_requests(tok, fact, job.contexts[1], options, " ", the_plan.bos)
    assert gold == 3 and options[gold] == "jane austen"
    assert {tok.decode(r.context) for r in reqs} == {"The author of Sense and Sensibility is"}
    assert [tok.decode(r.continuation) for r in reqs] == [" " + o for o in options]
    assert options[:3] == known.facts("71", 4, seed=cfg.seed)[1].options


def test_perplexity_is_the_hand_computed_mean_nll(phase2_model, isolated_roots):
    info, model, tok = phase2_model
    cfg = config(["tasks=[ppl]"])
    [summary] = api.evaluate(model, tok, info, planning.load_factsets(cfg), [], ["ppl"], cfg)
    text = textprobe.load("general")
    ids = torch.tensor([tok(text.content, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    nll = -lp[:-1].gather(-1, ids[0, 1:, None]).mean().item()
    m = summary["metrics"]["all"]
    assert m["nll_per_token"] == pytest.approx(nll, abs=1e-5) and m["n_tokens"] == ids.shape[1] - 1
    assert m["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert summary["text"]["sha256"] == sha256_file(Path(known.catalogue.SHIPPED) / "text" / "general.txt")
    assert Path(summary["directory"]).relative_to(isolated_roots["results"]).parts[:3] == ("ppl", "general", "ckpt")


# a text file's name -> the results folder name it gets (the file's own name was refused: 't ok' invalid)
TEXT_FILE_NAMES = {"t ok.txt": "t-ok", "ünï.txt": "uni", "Übung 2 (v1).md": "Ubung-2-v1", "..x..txt": "x",
                   "日本.txt": "text", "plain_name.txt": "plain_name"}


@pytest.mark.parametrize("file_name", list(TEXT_FILE_NAMES))
def test_a_text_files_results_folder_name_is_safe(file_name):
    name = textprobe.result_name(Path("/any") / file_name)
    assert name == TEXT_FILE_NAMES[file_name] and paths.check_name(name, "ppl.text") == name


def test_a_text_file_of_any_name_is_scored(phase2_model, isolated_roots, tmp_path):
    info, model, tok = phase2_model
    text = tmp_path / "dir with spaces é" / "t ok é.txt"
    text.parent.mkdir()
    text.write_text("A short text about rivers and hills.\n", encoding="utf-8")
    cfg = config(["tasks=[ppl]", f"ppl.text='{text}'"])
    [summary] = api.evaluate(model, tok, info, planning.load_factsets(cfg), [], ["ppl"], cfg)
    assert Path(summary["directory"]).relative_to(isolated_roots["results"]).parts[:2] == ("ppl", "t-ok-e")
    assert summary["text"]["path"] == str(text)


def test_long_texts_are_scored_in_windows_covering_every_token_once(bpe_tokenizer):
    text = textprobe.load("general")
    seq = bpe_tokenizer(text.content, add_special_tokens=False)["input_ids"]
    reqs = textprobe.requests(bpe_tokenizer, text, [], max_len=64)
    assert len(reqs) > 2 and all(len(r.context) + len(r.continuation) <= 64 for r in reqs)
    assert [t for r in reqs for t in r.continuation] == seq[1:]          # every token after the first, once
    start = 1
    for r in reqs:                      # each window's context is the text right before what it scores
        assert r.context == tuple(seq[start - len(r.context):start])
        start += len(r.continuation)
    with pytest.raises(UserError, match="no such text"):
        textprobe.load("no-such-text")


def test_locality_preset_from_the_entry_point_config(phase2_model, isolated_roots, tmp_path):
    info, model, tok = phase2_model
    cfg = api.config(["+experiment=locality", f"model.path={info.path}", "data.relation_id=50+71",
                      "data.index_end=3", "mc.num_options=5", "gen.max_new_tokens=2"])
    assert (cfg.data.dataset, cfg.tasks, cfg.prompt.type) == ("known", ["mc", "gen", "ppl"], "hgp-0")
    out = api.evaluate(model, tok, info, api.load_factsets(cfg), ["hgp-0"], cfg.tasks, cfg)
    got = {(s["task"], s["relation_id"]) for s in out if s["kind"] == "result"}
    assert got == {("mc", "50"), ("gen", "50"), ("mc", "71"), ("gen", "71"), ("ppl", None)}
    assert all(set(s["metrics"]) == {"all"} for s in out if s["kind"] == "result")
