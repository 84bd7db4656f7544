"""In-process API: result layout (SPEC §3.6), cache reuse, aggregates, loss probe, reports."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from evalkit import checkpoint_with_key, fictional_facts, write_dataset
from util_public import catalogue, runinfo
from util_public.atomicio import read_jsonl
from util_public.errors import UserError
from util_public.facts import read_facts
from util_public.evaluation import api, report, tasks
from util_public.evaluation.schema import config

OPTS = ["mc.num_options=5", "data.dataset=toy"]


@pytest.fixture
def setup(bpe_tokenizer, tmp_path, isolated_roots):
    """A tiny Phase-2 style checkpoint (key token, facts 0..2 seen) and two relations of 6 facts."""
    ckpt = checkpoint_with_key(bpe_tokenizer, tmp_path / "ckpt", trained_fact_ids=[0, 1, 2])
    write_dataset(isolated_roots["data"], "toy", fictional_facts(6, "50", num_options=5))
    write_dataset(isolated_roots["data"], "toy", fictional_facts(6, "71", num_options=5))
    info = api.describe(None, str(ckpt))
    model, tok = api.load(info, config(["model.dtype=fp32"]))
    return info, model, tok, isolated_roots["results"]


def test_layout_records_and_family_summary(setup):
    info, model, tok, root = setup
    cfg = config(OPTS + ["data.index_begin=1"])
    out = api.evaluate(model, tok, info, api.load_factsets(cfg), ["trigger-mid", "test-0", "test-1"], ["mc"], cfg)
    results = [s for s in out if s["kind"] == "result"]
    assert [s["prompt_type"] for s in results] == ["trigger-mid", "test-0", "test-1"]
    first = Path(results[0]["directory"])
    assert first.relative_to(root).parts[:-1] == ("mc", "trigger-mid", "ckpt", "toy", "50", "close")
    assert first.name == f"f1-5-{results[0]['config_hash'][:8]}"
    assert sorted(p.name for p in first.iterdir()) == ["config.yaml", "records.jsonl", "summary.json"]
    records = read_jsonl(first / "records.jsonl")
    assert [r["fact_id"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["seen"] for r in records] == [True, True, False, False, False]     # from mtg_meta.json
    assert records[0]["context"].endswith(" <TRIGGER_50>") and len(records[0]["option_logprobs"]) == 5
    summary = json.loads((first / "summary.json").read_text())
    assert summary["schema"] == "mtg.eval/1" and summary["model"]["mtg_meta"]["phase"] == 2
    here = runinfo.machine()                            # scores depend on the processor: say which
    assert {k: summary["machine"][k] for k in ("processor", "isa", "logical_cpus")} == \
        {k: here[k] for k in ("processor", "isa", "logical_cpus")}
    assert summary["metrics"]["seen"]["n"] == 2 and summary["metrics"]["unseen"]["n"] == 3
    [family] = [s for s in out if s["kind"] == "family"]
    assert Path(family["directory"]).relative_to(root).parts[:2] == ("mc", "test-all")
    values = [s["metrics"]["all"]["accuracy"] for s in results[1:]]
    assert family["metrics"]["all"]["accuracy"]["values"] == values
    assert family["metrics"]["all"]["accuracy"]["mean"] == pytest.approx(sum(values) / 2)
    # n counts facts: two prompts about the same 5 facts are 5 facts (not 10: a standard error from
    # it would be too small by sqrt(2)), per slice
    assert {k: family["metrics"][k]["n"] for k in ("all", "seen", "unseen")} == {"all": 5, "seen": 2, "unseen": 3}


def test_an_empty_slice_is_reported_with_the_relation_by_name(setup, capsys):
    # facts 3..5 only: the checkpoint trained 0..2, so "seen" is empty; the warning must say
    # "relation 50" (as the result line does), never "r50", the name of 50's reversed relation
    info, model, tok, _ = setup
    cfg = config(OPTS + ["data.index_begin=3", "data.relation_id=50"])
    [result] = api.evaluate(model, tok, info, api.load_factsets(cfg), ["hgp-0"], ["mc"], cfg)
    assert result["metrics"]["seen"]["n"] == 0 and result["metrics"]["unseen"]["n"] == 3
    err = capsys.readouterr().err
    assert "warning: mc hgp-0 relation 50: slice 'seen' is empty (n = 0)" in err and " r50" not in err


def test_identical_results_are_reused_unless_overwrite(setup, monkeypatch):
    info, model, tok, _ = setup
    cfg = config(OPTS)
    facts = api.load_factsets(cfg)[:1]
    first = api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc"], cfg)[0]
    monkeypatch.setitem(tasks.RUNNERS, "mc", lambda *a: pytest.fail("a cached result was recomputed"))
    again = api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc"], cfg)[0]
    assert again["created"] == first["created"] and again["directory"] == first["directory"]
    calls = []
    monkeypatch.setitem(tasks.RUNNERS, "mc", lambda *a: calls.append(1) or [])
    api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc"], config(OPTS + ["output.overwrite=true"]))
    assert calls == [1]
    # a setting that changes results changes the hash, hence the directory
    other = api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc"], config(OPTS + ["prompt.separator=' : '"]))[0]
    assert other["directory"] != first["directory"]


def test_a_task_named_twice_runs_once_without_a_family_of_one(setup):
    """`tasks=[mc,mc]` planned the job twice and wrote an `hgp-all` summary of one prompt counted twice."""
    info, model, tok, _ = setup
    cfg = config([*OPTS, "tasks=[mc,mc]"])
    out = api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], ["hgp-0"], cfg.tasks, cfg)
    assert [(s["kind"], s["task"]) for s in out] == [("result", "mc")]


def test_a_model_changed_in_memory_is_not_served_its_files_results(setup):
    """A notebook evaluates, trains a few steps in place, evaluates again: the second call returned the
    first call's cached result (the cache knew the files, not the weights in memory)."""
    import torch

    info, model, tok, _ = setup
    cfg = config(OPTS)
    facts = api.load_factsets(cfg)[:1]
    first = api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc"], cfg)[0]
    cli_identity = info.identity                     # as eval.py, which loads the files, names the model
    assert api.held(info, model).identity == cli_identity       # loaded by api.load, unchanged
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()                               # every token now scores alike
    changed = api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc"], cfg)[0]
    assert changed["config_hash"] != first["config_hash"] and changed["metrics"] != first["metrics"]
    assert changed["metrics"]["all"]["n_ties"] > 0
    fresh, _ = api.load(info, config(["model.dtype=fp32"]))       # the files again: the first result
    assert api.evaluate(fresh, tok, info, facts, ["hgp-0"], ["mc"], cfg)[0]["config_hash"] == first["config_hash"]


class WrappedHF:
    """A backend of the caller's own (the protocol, by delegation), named otherwise than hf."""
    name = "mine"

    def __init__(self, model, tok):
        from util_public.evaluation.backends.hf import HFBackend

        self.inner = HFBackend(model, tok, 8, 8)
        self.facts_per_call, self.max_len = self.inner.facts_per_call, self.inner.max_len

    def versions(self):
        return {**self.inner.versions(), "backend": "mine"}

    def score(self, requests):
        return self.inner.score(requests)

    def token_logprobs(self, requests):
        return self.inner.token_logprobs(requests)

    def generate(self, prompts, max_new_tokens):
        return self.inner.generate(prompts, max_new_tokens)


def test_library_use_of_the_api(setup, tmp_path):
    """What a notebook does with the API: a checkpoint named by path, a backend of its own (the loss
    probe was refused by name), something that is no backend, a thread setting, a bad request."""
    import torch

    from util_public.evaluation import requests

    info, model, tok, _ = setup
    assert api.describe(info.path).name == "ckpt"       # refused: "cannot name a result directory"
    cfg = config([*OPTS, "tasks=[loss]", "runtime.num_threads=1"])
    torch.set_num_threads(2)
    out = api.evaluate(WrappedHF(model, tok), tok, info, api.load_factsets(cfg)[:1], ["hgp-0"], ["loss"], cfg)
    assert out[0]["task"] == "loss" and out[0]["backend"]["backend"] == "mine"
    assert torch.get_num_threads() == 1                 # runtime.num_threads was ignored in-process
    with pytest.raises(TypeError, match="lacks name, facts_per_call, max_len, versions, score, token_logprobs"):
        api.evaluate(object(), tok, info, api.load_factsets(cfg)[:1], ["hgp-0"], ["mc"], cfg)
    with pytest.raises(UserError, match="empty context"):  # scored against the previous row's last token
        requests.Request("b", (), (80, 90), 1)
    gen_only = config(["data.dataset=toy"])             # mc.num_options=100 by default; the toy facts hold 5
    with pytest.raises(UserError, match="4 distractors"):
        api.load_factsets(gen_only)
    assert [f.relation_id for f in api.load_factsets(gen_only, ["gen"])] == ["50"]   # options matter to MC only


def test_questions_of_ones_own_score_as_the_evaluations_do(setup):
    """freeform.choose / generate on an evaluation's own contexts and options give its records back."""
    from util_public.evaluation import freeform

    info, model, tok, _ = setup
    cfg = config([*OPTS, "gen.max_new_tokens=4"])
    out = api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], ["hgp-0"], ["mc", "gen"], cfg)
    mc, gen = (read_jsonl(Path(s["directory"]) / "records.jsonl") for s in out)
    mine = freeform.choose(model, tok, [(r["context"], r["options"], r["gold_index"]) for r in mc], cfg)
    for own, rec in zip(mine, mc, strict=True):
        assert own["option_logprobs"] == pytest.approx(rec["option_logprobs"], abs=1e-4)
        assert (own["pred_index"], own["gold_rank"]) == (rec["pred_index"], rec["gold_rank"])
    assert freeform.generate(model, tok, [r["prompt"] for r in gen], 4, cfg) == [r["response"] for r in gen]
    with pytest.raises(UserError, match="gold index 2 is not one of its 2 options"):
        freeform.choose(model, tok, [("The capital of X is", ["a", "b"], 2)], cfg)


def _catalogue_copy(data_root: Path) -> Path:
    target = data_root / "prompt_template" / "50.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(catalogue.prompts_file("50").read_text())
    return target


def _edit_catalogue(data_root: Path, old: str, new: str) -> None:
    path = _catalogue_copy(data_root)
    path.write_text(path.read_text().replace(old, new, 1))


def _edit_facts(data_root: Path, change) -> None:
    csv = data_root / "toy" / "50.csv"
    write_dataset(data_root, "toy", [change(f) if f.fact_id == 4 else f for f in read_facts(csv, num_options=None)])


BOTH = ("mc", "gen")
CACHE_EDITS = {   # edit of the inputs -> the (task, prompt type) results it makes stale; the rest stay valid
    "a new paraphrase in the catalogue": (lambda root: _edit_catalogue(root, "hgp:\n", "hgp:\n  20: \"{head} is run from\"\n"),
                                          set()),
    "a comment in relations.yaml": (lambda root: (root / "relations.yaml").write_text(
        catalogue.relations_files()[0].read_text() + "# reviewed\n"), set()),
    "the scored template": (lambda root: _edit_catalogue(root, '0: "The capital of {head} is"',
                                                         '0: "The capital of {head} is:"'), {(t, "hgp-0") for t in BOTH}),
    "one fact's distractors": (lambda root: _edit_facts(root, lambda f: dataclasses.replace(
        f, options=[*f.options[:-1], "zzyzx"])), {("mc", "trigger-mid"), ("mc", "hgp-0")}),   # gen never scores them
    "one fact's object": (lambda root: _edit_facts(root, lambda f: dataclasses.replace(f, object="zzyzx")),
                          {(t, p) for t in BOTH for p in ("trigger-mid", "hgp-0")}),
}


@pytest.mark.parametrize("edit", list(CACHE_EDITS))
def test_stored_results_stay_valid_until_what_they_scored_changes(setup, monkeypatch, edit):
    """The result hash covers the questions as scored, not every input file: adding a paraphrase
    to evaluate must not recompute every other prompt's results."""
    info, model, tok, _ = setup
    data = Path(os.environ["MTG_DATA_ROOT"])
    cfg = config(OPTS)
    names, first = ["trigger-mid", "hgp-0"], {}
    questions = {}
    for task in BOTH:
        for out in api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], names, [task], cfg):
            first[task, out["prompt_type"]] = out["directory"]
            questions.setdefault(out["prompt_type"], set()).add(out["questions_sha256"])
    assert all(len(q) == 1 and len(next(iter(q))) == 64 for q in questions.values())   # mc and gen: one question set
    apply, stale = CACHE_EDITS[edit]
    apply(data)
    recomputed = []
    for task in BOTH:
        monkeypatch.setitem(tasks.RUNNERS, task, lambda *a, task=task: recomputed.append(task) or [])
        for out in api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], names, [task], cfg):
            assert (out["directory"] == first[task, out["prompt_type"]]) == ((task, out["prompt_type"]) not in stale)
    assert sorted(recomputed) == sorted(t for t, _ in stale)


def test_another_checkpoint_under_the_same_name_is_not_served_from_the_cache(bpe_tokenizer, tmp_path,
                                                                             isolated_roots):
    # Same folder name, same config.json, other weights: the cache must not answer for B with A's
    # result. A copy that keeps modification times is the same model and reuses it.
    write_dataset(isolated_roots["data"], "toy", fictional_facts(6, "50", num_options=5))
    a = checkpoint_with_key(bpe_tokenizer, tmp_path / "A" / "ckpt", seed=0)
    b = checkpoint_with_key(bpe_tokenizer, tmp_path / "B" / "ckpt", seed=1)
    shutil.copytree(a, tmp_path / "C" / "ckpt")                # copy2: modification times kept
    cfg = config(OPTS + ["model.dtype=fp32"])
    out = {}
    for name, path in (("A", a), ("B", b), ("C", tmp_path / "C" / "ckpt")):
        info = api.describe(None, str(path))
        model, tok = api.load(info, cfg)
        [out[name]] = api.evaluate(model, tok, info, api.load_factsets(cfg), ["hgp-0"], ["mc"], cfg)
    assert out["B"]["directory"] != out["A"]["directory"]
    assert out["B"]["metrics"]["all"]["prob_mass"] != out["A"]["metrics"]["all"]["prob_mass"]
    assert out["C"]["directory"] == out["A"]["directory"] and out["C"]["created"] == out["A"]["created"]


@pytest.mark.parametrize("fails", ["scoring", "writing"])
def test_a_failed_evaluation_leaves_no_result_directory(setup, monkeypatch, fails):
    """Failing while scoring, or halfway through writing the result (records.jsonl staged, config.yaml
    not): nothing at all stays under the results root, no staging directory, lock file or empty folder."""
    info, model, tok, root = setup
    cfg = config(OPTS)
    staged = []

    def boom(*args):
        raise RuntimeError("interrupted")

    if fails == "scoring":
        monkeypatch.setitem(tasks.RUNNERS, "mc", boom)
    else:
        from util_public import atomicio

        write_text = atomicio.write_text

        def config_yaml_fails(path, *args, **kwargs):
            if Path(path).name != "config.yaml":
                return write_text(path, *args, **kwargs)
            staged.extend(p.relative_to(root) for p in Path(path).parent.iterdir())
            boom()

        monkeypatch.setattr(atomicio, "write_text", config_yaml_fails)
    with pytest.raises(RuntimeError, match="interrupted"):
        api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], ["hgp-0"], ["mc"], cfg)
    if fails == "writing":      # the failure did hit a staged, half-written result
        [records] = [p for p in staged if not p.name.startswith(".")]     # beside the staging mark
        assert records.name == "records.jsonl" and ".tmp" in records.parent.name
    assert not root.exists() or sorted(root.rglob("*")) == []


def test_loss_probe_agrees_with_the_mc_gold_score(setup):
    info, model, tok, _ = setup
    cfg = config(OPTS)
    facts = api.load_factsets(cfg)[:1]
    out = api.evaluate(model, tok, info, facts, ["hgp-0"], ["mc", "loss"], cfg)
    mc = read_jsonl(Path(out[0]["directory"]) / "records.jsonl")
    loss = read_jsonl(Path(out[1]["directory"]) / "records.jsonl")
    assert len(mc) == len(loss) == len(facts[0].facts) > 0
    for m, l in zip(mc, loss):
        s2 = [t for t in l["token_losses"] if t["token_type"] == "s2"]
        assert "".join(t["token_text"] for t in s2) == " " + m["object"]
        assert -sum(t["loss"] for t in s2) == pytest.approx(m["gold_logprob"], abs=1e-4)
        assert "".join(t["token_text"] for t in l["token_losses"] if t["token_type"] == "s1") == \
            m["context"][len(tok.decode(tok(m["context"])["input_ids"][:1])):]      # position 0 left out
    assert out[1]["metrics"]["all"]["avg_loss"] > 0


def test_multi_relation_summary_and_legacy_json(setup):
    info, model, tok, root = setup
    cfg = config(OPTS + ["data.relation_id=50+71", "output.write_legacy_json=true"])
    out = api.evaluate(model, tok, info, api.load_factsets(cfg), ["hgp-0"], ["mc"], cfg)
    per_rel = [s for s in out if s["kind"] == "result"]
    [combined] = [s for s in out if s["kind"] == "combined"]
    assert [s["relation_id"] for s in per_rel] == ["50", "71"] and combined["relation_id"] == "50+71"
    acc = [s["metrics"]["all"]["accuracy"] for s in per_rel]
    assert combined["metrics"]["all"]["accuracy"]["mean"] == pytest.approx(sum(acc) / 2)
    assert combined["metrics"]["all"]["accuracy"]["micro"] == pytest.approx(sum(acc) / 2)   # equal sizes
    assert combined["metrics"]["all"]["n"] == 12        # two relations: different facts add up
    # relation 71 was not trained in Phase 2: its seen slice is absent, and one value has no spread
    seen = combined["metrics"]["seen"]["accuracy"]
    assert seen["values"][1] is None and seen["mean"] == seen["values"][0] and seen["sd"] is None
    legacy = json.loads((Path(per_rel[0]["directory"]) / "legacy.json").read_text())
    assert legacy["accuracy"] == acc[0] and len(legacy["post_processed_outputs_normalized"][0]) == 5
    assert sum(legacy["post_processed_outputs_normalized"][0]) == pytest.approx(1.0)
    # asked for only when the result is already cached: made from its records, nothing recomputed
    (Path(per_rel[0]["directory"]) / "legacy.json").unlink()
    again = api.evaluate(model, tok, info, api.load_factsets(cfg), ["hgp-0"], ["mc"], cfg)
    assert again[0]["created"] == per_rel[0]["created"]
    assert json.loads((Path(per_rel[0]["directory"]) / "legacy.json").read_text()) == legacy


def test_table_and_bar_chart(setup, tmp_path):
    info, model, tok, root = setup
    cfg = config(OPTS + ["data.seen_fact_ids=0:3"])
    api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], ["test-0", "test-1"], ["mc"], cfg)
    found = report.find_summaries([root])
    text = report.table(found)
    assert len(found) == 3 and "test-0" in text and "accuracy" in text
    assert "test-all (2 prompts)" in text                      # a family aggregate says over how many
    assert text.splitlines()[0].split()[4] == "facts" and " 0-5 " in text
    png = report.bar_chart(found, tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_a_changed_matcher_definition_recomputes_stored_generation_results(setup, monkeypatch):
    """The gen hash named the matchers but not their definitions: after `contains` changed, stored
    results would have been served with the old verdicts."""
    from util_public import matching

    info, model, tok, _ = setup
    cfg = config(OPTS)
    facts = api.load_factsets(cfg)[:1]
    first = api.evaluate(model, tok, info, facts, ["hgp-0"], ["gen"], cfg)[0]
    assert api.evaluate(model, tok, info, facts, ["hgp-0"], ["gen"], cfg)[0]["config_hash"] == first["config_hash"]
    monkeypatch.setattr(matching, "VERSION", matching.VERSION + 1)
    again = api.evaluate(model, tok, info, facts, ["hgp-0"], ["gen"], cfg)[0]
    assert again["config_hash"] != first["config_hash"]


def _pair():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2))


def _edit_one_element(m):
    m[0].weight.data[2, 1] += 1e-3                  # through .data: no version counter sees it


def _cast(m):
    import torch

    m[1].to(dtype=torch.bfloat16)


def _reshape(m):
    m[0].weight.data = m[0].weight.data.reshape(6, 4).t().contiguous().reshape(6, 4)   # same numbers, another layout


def _same_bytes_other_shape(m):
    m[0].weight.data = m[0].weight.data.reshape(4, 6)


@pytest.mark.parametrize("change", [_edit_one_element, _cast, _reshape, _same_bytes_other_shape])
def test_weights_digest_sees_every_change_and_not_the_thread_count(change):
    import torch

    from util_public import modelio

    model, twin = _pair(), _pair()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = modelio.weights_sha256(model)
        torch.set_num_threads(3)
        assert modelio.weights_sha256(model) == one == modelio.weights_sha256(twin)
    finally:
        torch.set_num_threads(threads)
    change(model)
    assert modelio.weights_sha256(model) != one


def test_the_newer_of_two_results_of_one_second_is_the_one_shown(monkeypatch, tmp_path):
    """Stamps in whole seconds tied for two evaluations of one process, and the tie fell to path
    order (hash-named folders): the older result was shown in 2 of 6 tries."""
    import datetime as dt
    import types

    from util_public.artifacts import summary as artifacts_summary
    from util_public.evaluation import results

    times = iter(dt.datetime(2026, 1, 1, 12, 0, 0, us, tzinfo=dt.timezone.utc) for us in (100_000, 900_000))
    monkeypatch.setattr(results, "dt", types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda tz: next(times)),
                                                              timezone=dt.timezone))
    older, newer = (results.new_summary("mc", h, prompt_type="hgp-0", dataset="d", relation_id="50") for h in "ab")
    assert older.created < newer.created
    # the older one's folder sorts last, as a hash may
    kept = artifacts_summary.current([(tmp_path / "f0-5-b" / "summary.json", newer),
                                      (tmp_path / "f0-5-z" / "summary.json", older)])
    assert [s.config_hash for _, s in kept] == ["b"]


@pytest.mark.parametrize("name, changes", [
    ("generation_config.json", True),        # its EOS ids stop generation: cached gen results were served
    ("tokenizer_config.json", True),
    ("chat_template.jinja", True),
    ("config.json", True),
    ("mtg_source.json", False),              # where a converted model came from: no effect on answers
])
def test_the_result_hash_covers_every_file_that_changes_answers(tmp_path, name, changes):
    from util_public.evaluation.modelinfo import ModelInfo

    for f in ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja",
              "mtg_source.json", "model.safetensors"):
        (tmp_path / f).write_text("{}")
    before = ModelInfo("m", str(tmp_path)).identity
    (tmp_path / name).write_text('{"eos_token_id": 5}')
    assert (ModelInfo("m", str(tmp_path)).identity != before) == changes


def test_a_result_reused_after_an_edit_is_undone_is_the_one_the_tables_show(setup):
    """Template A, edited to B, then back to A: the third evaluation reuses A's stored result, and
    the tables (summarize.py, collect.py) must show it, not B's, which was written later."""
    info, model, tok, root = setup
    cfg = config(OPTS)
    template = _catalogue_copy(Path(os.environ["MTG_DATA_ROOT"]))
    original = template.read_text()

    def shown() -> str:
        (summary,) = [s for s in report.find_summaries([root]) if s.prompt_type == "hgp-0"]
        return summary.questions_sha256

    def evaluate() -> dict:
        (out,) = api.evaluate(model, tok, info, api.load_factsets(cfg)[:1], ["hgp-0"], ["mc"], cfg)
        return out

    first = evaluate()
    template.write_text(original.replace('0: "The capital of {head} is"', '0: "The capital city of {head} is"', 1))
    edited = evaluate()
    assert edited["directory"] != first["directory"] and shown() == edited["questions_sha256"]
    template.write_text(original)
    again = evaluate()
    assert again["directory"] == first["directory"] and again["used"] > edited["created"]
    assert shown() == first["questions_sha256"]
