"""`mc.object_case=title`: the options scored as names are usually written, the records holding
them as scored; trained objects are still recognised whatever their case."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit import KNOWN_MC as KNOWN, loaded_with_key
from util_public.errors import UserError
from util_public import objectcase
from util_public.evaluation import api, plan as planning, requests
from util_public.evaluation.schema import config
from util_public.facts import Fact, write_facts
from util_public.recipes import trained_pull


@pytest.mark.parametrize("stored,title", [
    ("paris", "Paris"), ("new delhi", "New Delhi"), ("port of spain", "Port of Spain"),
    ("andorra la vella", "Andorra la Vella"), ("la paz", "La Paz"), ("porto-novo", "Porto-Novo"),
    ("saint george's", "Saint George's"), ("university of the andes", "University of the Andes"),
    # the shipped vocabularies' harder names (rule 2 wrote "Mcgill", "At Austin", "le Guin", "Von Goethe")
    ("mcgill university", "McGill University"), ("georgia o'keeffe", "Georgia O'Keeffe"),
    ("university of texas at austin", "University of Texas at Austin"), ("roman a clef", "Roman a Clef"),
    ("washington university in st. louis", "Washington University in St. Louis"),
    ("ursula k. le guin", "Ursula K. Le Guin"), ("johann wolfgang von goethe", "Johann Wolfgang von Goethe"),
    ("ngugi wa thiong'o", "Ngugi wa Thiong'o"), ("newcastle upon tyne", "Newcastle upon Tyne"),
    ("washington, d.c.", "Washington, D.C."), ("j. r. r. tolkien", "J. R. R. Tolkien"), ("a coruña", "A Coruña"),
    ("ﬁji", "Fiji"),                                  # the title-case mapping, not upper(): "FIji"
])
def test_title_case_table(stored, title):
    assert objectcase.written(stored, "title", "k") == title
    assert objectcase.written(stored, "as_is", "k") == stored
    assert objectcase.title(title) == title          # written twice, the same


@pytest.fixture
def model(bpe_tokenizer, tmp_path):
    return loaded_with_key(bpe_tokenizer, tmp_path / "ckpt")


def test_title_cased_options_are_what_the_scorer_sees(model):
    info, loaded, tok = model
    runs = {}
    for case in ("as_is", "title"):
        cfg = config([*KNOWN, f"mc.object_case={case}", "mc.calibration=subjectless"])
        [summary] = api.evaluate(loaded, tok, info, planning.load_factsets(cfg), ["hgp-0"], ["mc"], cfg)
        runs[case] = [json.loads(x) for x in (Path(summary["directory"]) / "records.jsonl").read_text().splitlines()]
    backend = api.as_backend(loaded, tok, cfg)
    for plain, titled in zip(runs["as_is"], runs["title"]):
        assert titled["options"] == [objectcase.title(o) for o in plain["options"]] != plain["options"]
        assert titled["gold_index"] == plain["gold_index"] and titled["object"] == plain["object"]
        for context, key in ((titled["context"], "option_logprobs"), (titled["null_context"], "option_null_logprobs")):
            reqs = [requests.split(tok, context, " " + o, [], key=o) for o in titled["options"]]
            assert [tok.decode(r.continuation) for r in reqs] == [" " + o for o in titled["options"]]
            assert titled[key] == pytest.approx([s.sum_logprob for s in backend.score(reqs)], abs=1e-5)


def test_as_is_leaves_the_config_hash_as_it_was(model):
    info, _, tok = model
    jobs = {}
    for extra in ([], ["mc.object_case=as_is"], ["mc.object_case=title"]):
        cfg = config([*KNOWN, *extra])
        [jobs[tuple(extra)]] = planning.build(cfg, info, tok, planning.load_factsets(cfg), ["hgp-0"], ["mc"], "hf",
                                              "float32").jobs
    assert "object_case" not in jobs[()].payload["mc"]
    assert jobs[()].config_hash == jobs[("mc.object_case=as_is",)].config_hash != jobs[("mc.object_case=title",)].config_hash


@pytest.mark.parametrize("key", ["mc.object_case", "loss_probe.object_case"])
def test_an_unknown_case_names_its_key_before_any_result(model, isolated_roots, key):
    info, _, tok = model
    cfg = config([*KNOWN, f"{key}=upper"])
    with pytest.raises(UserError) as err:
        planning.build(cfg, info, tok, planning.load_factsets(cfg), None, ["mc", "loss"], "hf", "float32")
    assert all(n in err.value.message for n in (key, "'upper'", "as_is, title")), err.value.message
    assert not list(isolated_roots["results"].rglob("*.json"))


def test_trained_pull_recognises_title_cased_trained_objects(tmp_path):
    rec = {"fact_id": 0, "options": ["Oslo", "Rome", "Port of Spain"], "option_logprobs": [-1.0, -5.0, -2.0],
           "gold_index": 2, "pred_index": 0, "correct": False, "object": "port of spain"}
    csv = write_facts(tmp_path / "50.csv", [Fact(0, "50", "S0", "oslo", [])])
    p = trained_pull.pull("mc", [rec], trained_pull.trained_objects(csv))
    assert (p["wrong"], p["wrong_trained"], p["distractors_trained"], p["accuracy_untrained_options"]) == (1, 1, 0.5, 1.0)
