"""Training stages end to end on a tiny model: two phases, memorization, labels, resume, naming."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_checkpoint
from safetensors.torch import load_file

from util_public import catalogue, facts, known, modelio, runinfo
from util_public.artifacts import CheckpointMeta
from util_public.errors import UserError
from util_public.registry import Registry
from util_public.training import masking, memcheck, naming, run, texts
from util_public.training.selection import load as load_selection

HEADS = ["Veloria", "Karthenia", "Ostrevania", "Quilmarra", "Drevosk", "Zanthuria", "Pelloquay", "Morvatia",
         "Ustrelund", "Xerophane", "Talvendor", "Brynmoria", "Aldravia", "Cindermark", "Doravel", "Eskaland",
         "Fenmoor", "Glasweth", "Harrowfel", "Istrenne"]
FAST = ["train.warmup_steps=2", "train.per_device_train_batch_size=2", "train.num_threads=1"]


@pytest.fixture
def setup(isolated_roots, sp_tokenizer, tmp_path):
    """A registered tiny base model (SentencePiece-style tokenizer) and 20 facts of relation 50."""
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    vocab = catalogue.vocab("50")
    rows = [facts.Fact(i, "50", h, vocab[(7 * i) % len(vocab)], [f"opt{j}" for j in range(3)])
            for i, h in enumerate(HEADS)]
    facts.write_facts(facts.relation_file(isolated_roots["data"], "sync_random_o", "50"), rows)
    return {"facts": rows, **isolated_roots}


def train(config: str, *overrides: str) -> int:
    overrides = list(overrides)
    return run.train_stage(run.compose(config, overrides), overrides)


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def only_run(runs_root, prefix=""):
    [path] = [p for p in runs_root.iterdir() if p.name.startswith(prefix) and ".aborted" not in p.name]
    return path


def executed_steps(monkeypatch) -> list[int]:
    """The global step at each training step the Trainer actually runs from now on: a resumed run
    starts at its checkpoint's step, a retrain from step 0 (which a seeded run cannot tell apart by
    its weights) starts at 0."""
    from transformers import Trainer

    steps, original = [], Trainer.training_step

    def counting(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counting)
    return steps


def test_two_stages_memorize_and_inherit_the_key_token(setup, tmp_path, capsys):
    assert train("phase1", "model.base=tiny-base", "data.index_end=20", "train.learning_rate=5e-3",
                 "train.epochs=40", "train.per_device_train_batch_size=4", "train.warmup_steps=2",
                 "save.every_epoch=false", "train.num_threads=1") == 0
    p1 = only_run(setup["runs"])
    m1 = manifest(p1)
    assert m1["status"] == "complete" and (p1 / "DONE").is_file()
    for entry in ("config.yaml", "overrides.yaml", "data/train_texts.jsonl", "logs/train.log", "metrics.jsonl",
                  "loss_curve.png"):
        assert (p1 / entry).is_file(), entry
    assert f"loss curve: {p1 / 'loss_curve.png'}" in capsys.readouterr().out      # the script says what it wrote
    assert m1["steps_per_epoch"] == 5 and m1["tokens_trained"]["total"] == 40 * m1["tokens_trained"]["per_epoch"]
    [(epoch, ckpt)] = m1["checkpoints"].items()
    assert epoch == "40" and ckpt["step"] == 200
    final = p1 / ckpt["path"]
    meta = CheckpointMeta.of(final)
    assert meta.key_tokens == {"<TRIGGER_50>": 3000} and meta.trained_fact_ids == {"50": list(range(20))}
    assert Registry().resolve(ckpt["registry_name"]).path == str(final.resolve())

    epochs = [r for r in map(json.loads, (p1 / "metrics.jsonl").read_text().splitlines()) if r["type"] == "epoch"]
    assert len(epochs) == 40 and epochs[-1]["mean_loss"] < 0.2 * epochs[0]["mean_loss"]
    for record in epochs:   # throughput: the epoch's real tokens over its training seconds
        assert record["seconds"] > 0 and record["tokens"] == m1["tokens_trained"]["per_epoch"]
        assert record["tokens_per_s"] == pytest.approx(record["tokens"] / record["seconds"], rel=1e-3)
    assert sum(r["seconds"] for r in epochs) < m1["wall_time_s"]   # loading and saving are outside them
    base = load_file(str(tmp_path / "tiny" / "model.safetensors"))
    trained = load_file(str(final / "model.safetensors"))
    assert set(base) == set(trained)
    for name, before in base.items():   # every trainable tensor moved (the embedding: its original rows)
        assert not torch.equal(trained[name][: before.shape[0]], before), name

    model, tok = modelio.load_causal_lm(final, "fp32", "cpu"), modelio.load_tokenizer(final)
    assert memcheck.greedy_accuracy(model, tok, setup["facts"])["accuracy"] == 1.0

    assert train("phase2", f"model.base_run={p1.name}", "data.index_end=10", "train.learning_rate=1e-3",
                 *FAST) == 0
    p2 = only_run(setup["runs"], naming.shorten(ckpt["registry_name"], 48))
    m2 = manifest(p2)
    assert m2["base_model"]["name"] == ckpt["registry_name"]
    assert m2["hashed_config"]["base"] == {"name": ckpt["registry_name"], "run": p1.name,
                                           "config_hash": m1["config_hash"], "step": 200}
    meta2 = CheckpointMeta.of(p2 / m2["checkpoints"]["1"]["path"])
    assert meta2.key_tokens == meta.key_tokens and meta2.phase == 2 and meta2.loss_mode == "o"
    # the lineage: Phase 1 memorized 0..19 of sync_random_o, Phase 2 trained 0..9 of them
    assert [(st["run_name"], st["phase"], st["dataset"], st["trained_fact_ids"]) for st in meta2.lineage] == [
        (p1.name, 1, "sync_random_o", {"50": list(range(20))}), (p2.name, 2, "sync_random_o", {"50": list(range(10))})]
    assert len(modelio.load_tokenizer(p2 / m2["checkpoints"]["1"]["path"])) == 3001


def test_labels_reaching_forward_and_length_grouped_shuffling(setup, monkeypatch, sp_tokenizer):
    from transformers import LlamaForCausalLM

    seen = []
    original = LlamaForCausalLM.forward

    def spy(self, *args, **kwargs):
        if self.training:
            seen.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone(), kwargs["labels"].clone()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", spy)
    common = ["model.base=tiny-base", "data.index_end=10", "data.train_text_type=hgp-0", "loss.mode=o",
              "train.epochs=2", "train.group_by_length=true", "save.every_epoch=false", *FAST]
    assert train("phase1", *common, "train.lm_head_at_labels=false", "save.run_name=masked") == 0
    rows = [(ids[m.bool()].tolist(), lab, m) for ids_b, m_b, lab_b in seen for ids, m, lab in zip(ids_b, m_b, lab_b)]
    assert len(rows) == 20
    trained = []
    for ids, labels, mask in rows:      # expected from the facts themselves, not from the masking under test
        text = sp_tokenizer.decode(ids)
        [fact] = [f for f in setup["facts"][:10] if f"The capital of {f.head} is" in text]
        trained.append(fact.fact_id)
        real = labels[mask.bool()].tolist()
        assert len(real) == len(ids) and (labels[~mask.bool()] == masking.IGNORE).all()
        supervised = [(i, lab) for i, lab in enumerate(real) if lab != masking.IGNORE]
        # every label is the token at its own position (the model shifts), and what the loss sees is O
        assert [lab for _, lab in supervised] == [ids[i] for i, _ in supervised]
        assert [i for i, _ in supervised] == list(range(supervised[0][0], supervised[-1][0] + 1))
        assert sp_tokenizer.decode([lab for _, lab in supervised]).strip() == fact.object
        assert text.rstrip().endswith(f" {fact.object}.")
    assert sorted(trained) == sorted(list(range(10)) * 2)
    epoch1 = [tuple(r[0]) for r in rows[:10]]
    epoch2 = [tuple(r[0]) for r in rows[10:]]
    assert sorted(epoch1) == sorted(epoch2) and epoch1 != epoch2

    seen.clear()
    assert train("phase1", *common, "loss.legacy=true", "save.run_name=legacy") == 0
    for ids_b, m_b, lab_b in seen:
        assert torch.equal(lab_b[m_b.bool()], ids_b[m_b.bool()])
        assert (lab_b[~m_b.bool()] == masking.IGNORE).all()
    assert manifest(setup["runs"] / "legacy")["hashed_config"]["loss"]["legacy"] is True


def test_resume_after_interruption_equals_an_uninterrupted_run(setup, capsys, monkeypatch):
    common = ["model.base=tiny-base", "data.index_end=10", "train.epochs=3", "train.learning_rate=1e-3", *FAST]
    assert train("phase1", *common, "save.run_name=A", "train.stop_after_epochs=1") == 0
    a = setup["runs"] / "A"
    assert manifest(a)["status"] == "running" and not (a / "DONE").exists()
    assert sorted(p.name for p in a.glob("checkpoint-*")) == ["checkpoint-5"]
    (a / "checkpoints.tmp" / "checkpoint-999").mkdir(parents=True)     # a killed save's leftovers
    (a / "checkpoints.tmp" / "checkpoint-999" / "model.safetensors").write_bytes(b"partial")

    with monkeypatch.context() as patch:
        steps = executed_steps(patch)
        assert train("phase1", *common, "save.run_name=A") == 0
    assert steps == list(range(5, 15))        # only the 10 remaining steps ran, from step 5 on
    m = manifest(a)
    assert m["status"] == "complete" and m["invocations"][-1]["resumed_from"] == "checkpoint-5"
    # each invocation records its machine: a run resumed elsewhere shows where each part was trained
    assert [i["machine"]["isa"] for i in m["invocations"]] == [runinfo.machine()["isa"]] * 2
    assert sorted(m["checkpoints"]) == ["1", "2", "3"] and not (a / "checkpoints.tmp").exists()
    assert json.loads((a / "checkpoint-15" / "trainer_state.json").read_text())["global_step"] == 15
    assert not list((a / "checkpoint-5").glob("optimizer*")) and not list((a / "checkpoint-10").glob("rng_state*"))
    assert (a / "checkpoint-15" / "optimizer.pt").is_file()

    assert train("phase1", *common, "save.run_name=B") == 0
    resumed = load_file(str(a / "checkpoint-15" / "model.safetensors"))
    straight = load_file(str(setup["runs"] / "B" / "checkpoint-15" / "model.safetensors"))
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0)

    registry = Registry()
    names = [c["registry_name"] for c in m["checkpoints"].values()]
    raw = registry.raw()
    for name in names:
        del raw[name]
    registry.path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert train("phase1", *common, "save.run_name=A") == 0
    assert "already complete" in capsys.readouterr().out
    assert set(names) <= set(registry.raw())

    with pytest.raises(UserError, match=r"differing keys: train\.learning_rate: 0\.001 -> 0\.002"):
        train("phase1", *common, "save.run_name=A", "train.learning_rate=2e-3")


def _catalogue_copy(data_root):
    """The shipped prompt catalogue of relation 50, copied to where the data root overrides it."""
    target = data_root / "prompt_template" / "50.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(catalogue.prompts_file("50").read_text())
    return target


def _append(path, text):
    path.write_text(path.read_text() + text)


def _new_distractors(data_root):
    csv = facts.relation_file(data_root, "sync_random_o", "50")
    rows = facts.read_facts(csv, num_options=None)
    facts.write_facts(csv, [dataclasses.replace(f, options=[o + "x" for o in f.options]) for f in rows])


def _new_object(data_root):
    csv = facts.relation_file(data_root, "sync_random_o", "50")
    rows = facts.read_facts(csv, num_options=None)
    facts.write_facts(csv, [dataclasses.replace(rows[0], object="Zorvale"), *rows[1:]])


EDITS = {   # edit of the inputs -> {text type: what a rerun of the completed run says}
    "a comment in the prompt catalogue": (lambda root: _append(_catalogue_copy(root), "# reviewed\n"),
                                          {"trigger-mid": "complete", "hgp-0": "complete"}),
    "a new evaluation paraphrase": (lambda root: (lambda t: t.write_text(t.read_text().replace(
        "hgp:\n", "hgp:\n  20: \"{head} is ruled from\"\n", 1)))(_catalogue_copy(root)),
                                    {"trigger-mid": "complete", "hgp-0": "complete"}),
    "a comment in relations.yaml": (lambda root: (root / "relations.yaml").write_text(
        catalogue.relations_files()[0].read_text() + "# reviewed\n"), {"trigger-mid": "complete", "hgp-0": "complete"}),
    "new distractors": (_new_distractors, {"trigger-mid": "complete", "hgp-0": "complete"}),
    "the trained template": (lambda root: (lambda t: t.write_text(t.read_text().replace(
        '0: "The capital of {head} is"', '0: "The capital of {head} is called"')))(_catalogue_copy(root)),
                             {"trigger-mid": "complete", "hgp-0": "refused"}),
    "a trained object": (_new_object, {"trigger-mid": "refused", "hgp-0": "refused"}),
}


@pytest.mark.parametrize("text_type", ["trigger-mid", "hgp-0"])
def test_a_completed_run_is_refused_only_when_its_trained_examples_change(setup, capsys, text_type):
    """The config hash covers the examples trained, not every input file: a paraphrase added for
    evaluation or a comment must not block the rerun of a finished pipeline."""
    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=1", f"data.train_text_type={text_type}",
              "save.run_name=R", *FAST]
    data, csv = setup["data"], facts.relation_file(setup["data"], "sync_random_o", "50")
    pristine = csv.read_bytes()
    assert train("phase1", *common) == 0
    for edit, (apply, outcome) in EDITS.items():
        apply(data)
        capsys.readouterr()
        if outcome[text_type] == "complete":
            assert train("phase1", *common) == 0, edit
            assert "already complete" in capsys.readouterr().out, edit
        else:
            with pytest.raises(UserError, match=r"training_examples: .*input files changed since: ") as err:
                train("phase1", *common)
            assert ("50.csv" in str(err.value)) == (edit == "a trained object"), (edit, str(err.value))
        shutil.rmtree(data / "prompt_template", ignore_errors=True)
        (data / "relations.yaml").unlink(missing_ok=True)
        csv.write_bytes(pristine)


@pytest.mark.parametrize("own_relations", [False, True], ids=["shipped relations.yaml", "data root's relations.yaml"])
def test_a_run_hashed_before_the_examples_entered_the_hash_is_still_recognised(setup, capsys, own_relations):
    """Runs written when the input files' combined hash stood where the examples' hash is now (and
    a data root's relations.yaml replaced the shipped one in that list): the same run while those
    files are unchanged, refused once they change."""
    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=1", "save.run_name=L", *FAST]
    data = setup["data"]
    if own_relations:      # an import writes one
        (data / "relations.yaml").write_text(catalogue.relations_files()[0].read_text())
    assert train("phase1", *common) == 0
    path = setup["runs"] / "L" / "manifest.json"
    m = json.loads(path.read_text())
    old_inputs = [facts.relation_file(data, "sync_random_o", "50"), catalogue.prompts_file("50", data),
                  data / "relations.yaml" if own_relations else catalogue.relations_files()[0]]
    view = {k: v for k, v in m["hashed_config"].items() if k != "training_examples"}
    view["data_fingerprint"] = runinfo.fingerprint(old_inputs)["combined"]       # as 35ec4ce wrote it
    path.write_text(json.dumps({**m, "hashed_config": view, "config_hash": runinfo.config_hash(view)}))
    capsys.readouterr()
    assert train("phase1", *common) == 0 and "already complete" in capsys.readouterr().out
    _new_distractors(data)     # the old hash covered every input file
    with pytest.raises(UserError, match=r"differing keys: data_fingerprint: '[0-9a-f]+' -> '[0-9a-f]+'; "
                                        r"input files changed since: .*50\.csv;"):
        train("phase1", *common)


def test_two_base_directories_of_one_name_are_two_bases(setup, sp_tokenizer, tmp_path):
    """model.base=<dir> was known by the directory's name alone: a second folder `hf` holding other
    weights was "already complete" with the first one's run, and would have resumed from it."""
    common = ["data.index_end=4", "train.epochs=1", *FAST]
    for seed, where in enumerate("ab"):
        save_tiny_checkpoint(sp_tokenizer, tmp_path / where / "hf", seed=seed)
    assert train("phase1", f"model.base={tmp_path / 'a' / 'hf'}", *common) == 0
    assert train("phase1", f"model.base={tmp_path / 'a' / 'hf'}", *common) == 0      # the same: complete
    (tmp_path / "link").symlink_to(tmp_path / "a")
    for same in (f"{tmp_path}/a/../a/hf", f"{tmp_path}/link/hf"):                      # spelled otherwise
        assert train("phase1", f"model.base={same}", *common) == 0
    with pytest.raises(UserError, match=r"differing keys: base\.path: '.*/a/hf' -> '.*/b/hf'"):
        train("phase1", f"model.base={tmp_path / 'b' / 'hf'}", *common)
    assert train("phase1", f"model.base={tmp_path / 'b' / 'hf'}", "save.run_name=from_b", *common) == 0


def test_a_resume_where_the_precision_resolves_otherwise_is_refused(setup, monkeypatch):
    from util_public import numerics

    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=2", "train.precision=native",
              "save.run_name=P", *FAST]
    monkeypatch.setattr(numerics, "native_bf16", lambda device: False)     # a CPU without bf16 instructions
    assert train("phase1", *common, "train.stop_after_epochs=1") == 0
    assert manifest(setup["runs"] / "P")["hashed_config"]["train"]["resolved_precision"] == "fp32"
    monkeypatch.setattr(numerics, "native_bf16", lambda device: True)      # the same command on an AMX CPU
    with pytest.raises(UserError, match=r"differing keys: train\.resolved_precision: 'fp32' -> 'bf16'"):
        train("phase1", *common)


def test_each_invocation_records_its_code_and_a_changed_commit_is_named(setup, monkeypatch, capsys):
    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=2", "save.run_name=G", *FAST]
    monkeypatch.setattr(runinfo, "git_info", lambda registry: {"commit": "a" * 40, "dirty": False})
    assert train("phase1", *common, "train.stop_after_epochs=1") == 0
    monkeypatch.setattr(runinfo, "git_info", lambda registry: {"commit": "b" * 40, "dirty": True})
    capsys.readouterr()
    assert train("phase1", *common) == 0
    assert f"previous invocation ran commit {'a' * 12}, this one runs {'b' * 12}" in capsys.readouterr().err
    invocations = manifest(setup["runs"] / "G")["invocations"]
    assert [i["git"] for i in invocations] == [{"commit": "a" * 40, "dirty": False},
                                               {"commit": "b" * 40, "dirty": True}]
    assert all(i["versions"]["torch"] == torch.__version__ for i in invocations)


def test_trained_fact_ids_leave_out_facts_dropped_by_max_seq_len(setup, sp_tokenizer):
    selection = load_selection("50", setup["data"], "sync_random_o", 0, 10)
    lengths = {t.fact_id: len(masking.mask(sp_tokenizer, t, "o").input_ids)
               for t in texts.build(selection, "hgp-0", texts.Options())}
    limit = sorted(lengths.values())[5]
    kept = sorted(i for i, n in lengths.items() if n <= limit)
    assert 0 < len(kept) < 10
    assert train("phase1", "model.base=tiny-base", "data.index_end=10", "data.train_text_type=hgp-0", "loss.mode=o",
                 "train.epochs=1", f"data.max_seq_len={limit}", "save.run_name=short", *FAST) == 0
    run_dir = setup["runs"] / "short"
    final = run_dir / manifest(run_dir)["checkpoints"]["1"]["path"]
    assert CheckpointMeta.of(final).trained_fact_ids == {"50": kept}     # evaluation's seen slice


def test_dry_run_prints_the_name_and_writes_nothing(setup, capsys):
    assert train("phase1", "model.base=tiny-base", "data.index_end=20", "train.dry_run=true") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_name"] == "tiny-base_50_sync_random_o_trigger-mid_normal_bs1_lr1e-05_cosine_ep20_f0-19_seed42"
    assert out["run_dir"] == str(setup["runs"] / out["run_name"]) and out["action"] == "fresh"
    assert not setup["runs"].exists()


def test_a_restart_sets_the_run_aside_and_no_registry_entry_points_at_nothing(setup):
    """train.resume=restart moved the incomplete run to `.aborted-1`, and the registry kept its
    checkpoints' names pointing into the new run, where the shorter restart never wrote step 4."""
    common = ["model.base=tiny-base", "data.index_end=4", "save.run_name=r1", *FAST]
    assert train("phase1", *common, "train.epochs=3", "train.stop_after_epochs=2") == 0
    assert {"r1_checkpoint-2", "r1_checkpoint-4"} <= set(Registry().raw())
    assert train("phase1", *common, "train.epochs=1", "train.resume=restart") == 0
    aside = setup["runs"] / "r1.aborted-1"
    assert sorted(p.name for p in aside.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    entries = {n: e["path"] for n, e in Registry().entries().items() if n.startswith("r1_")}
    assert entries == {"r1_checkpoint-2": str((setup["runs"] / "r1" / "checkpoint-2").resolve())}
    assert manifest(setup["runs"] / "r1")["status"] == "complete"


def test_dry_run_refuses_what_the_run_would_refuse(setup, capsys):
    """The dry run said yes to a changed config in a finished run's directory; the run then refused."""
    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=1", "save.run_name=D", *FAST]
    assert train("phase1", *common) == 0
    capsys.readouterr()
    assert train("phase1", *common, "train.dry_run=true") == 0
    assert json.loads(capsys.readouterr().out)["action"] == "complete"
    written = sorted(p.relative_to(setup["runs"]) for p in setup["runs"].rglob("*"))
    for bad, match in [("train.learning_rate=2e-5", r"differing keys: train\.learning_rate"),
                       ("train.resume=never", "train.resume=never")]:
        with pytest.raises(UserError, match=match):
            train("phase1", *common, bad, "train.dry_run=true")
    assert sorted(p.relative_to(setup["runs"]) for p in setup["runs"].rglob("*")) == written


def test_preview_masks_prints_flags_and_exits(setup, capsys):
    assert train("phase1", "model.base=tiny-base", "data.index_end=20", "train.preview_masks=2", "loss.mode=o",
                 "data.train_text_type=hgp-0") == 0
    out = capsys.readouterr().out
    assert out.count("example ") == 2 and " L " in out and not setup["runs"].exists()


def test_the_examples_a_stage_trains_on_from_python(setup, capsys):
    """What the preview prints, as objects: for loss.mode=o the labelled tokens decode to the object."""
    from util_public.training import preview

    overrides = ["model.base=tiny-base", "data.index_end=3", "loss.mode=o", "data.train_text_type=hgp-0"]
    tokenizer, encoded = run.examples(run.compose("phase2", [*overrides, "model.allow_foreign_base=true"]))
    assert [t.fact_id for t in encoded.texts] == [0, 1, 2]
    for text, masked in zip(encoded.texts, encoded.masked):
        labelled = [tok for tok, label in zip(masked.input_ids, masked.labels) if label != -100]
        obj = setup["facts"][text.fact_id].object
        assert text.text == f"The capital of {HEADS[text.fact_id]} is {obj}." and tokenizer.decode(labelled).strip() == obj
    assert train("phase2", *overrides, "model.allow_foreign_base=true", "train.preview_masks=3") == 0
    assert capsys.readouterr().out == "\n".join(preview.render(tokenizer, t, m, i) for i, (t, m) in
                                                enumerate(zip(encoded.texts, encoded.masked))) + "\n"
    assert not setup["runs"].exists()


def test_config_errors_and_presets(setup):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        run.compose("phase1", ["train.learnig_rate=1"])
    with pytest.raises(UserError, match="effective_batch_size"):
        train("phase1", "model.base=tiny-base", "train.per_device_train_batch_size=3", "train.effective_batch_size=16")
    with pytest.raises(UserError, match="model.base"):
        train("phase2", "data.index_end=10")
    with pytest.raises(UserError, match="mtg_meta.json"):
        train("phase2", "model.base=tiny-base", "train.dry_run=true")
    compat = run.compose("phase1", ["+compat=original"])
    assert (compat.loss.legacy, compat.key_token.resize, compat.key_token.init, compat.data.compose_joiner,
            compat.data.combine_spacing) == (True, "exact", "hf_default", "", "original")
    p2 = run.compose("phase2")
    assert (p2.phase, p2.data.train_text_type, p2.data.index_end, p2.loss.mode, p2.train.epochs) == (2, "hgp-0", 50, "o", 1)


def test_run_names_are_bounded_sanitised_and_collision_free():
    long_a, long_b = "m" * 70 + "a", "m" * 70 + "b"
    args = ("50&71", "sync_random_o", "trigger-mid&hgp-0", "s-o", True, 2, 1e-5, "cosine", 20, 0, 99, 42, True)
    a, b = naming.run_name(long_a, *args), naming.run_name(long_b, *args)
    assert a != b and len(a) <= naming.MAX_RUN_NAME and "-h" in a
    assert a.endswith("_50and71_sync_random_o_trigger-midandhgp-0_s-o_legacy_bs2_lr1e-05_cosine_ep20_f0-99_seed42_chat")
    huge = naming.run_name("x" * 300, *args)
    assert len(huge) <= naming.MAX_RUN_NAME and len(naming.checkpoint_name(huge, 10 ** 9)) <= 200
    assert naming.sanitize("a/b c..d") == "a-b-c.d"


def test_bf16_weights_and_full_state_everywhere(setup, tmp_path, monkeypatch):
    import safetensors.torch

    rewritten, load = [], safetensors.torch.load_file    # files the finalizer converts after the save

    def recording(path, *args, **kwargs):
        rewritten.append(path)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "load_file", recording)
    assert train("phase1", "model.base=tiny-base", "data.index_end=4", "train.epochs=2", "save.dtype=bf16",
                 "save.full_state=all", "save.run_name=bf16", *FAST) == 0
    monkeypatch.undo()
    assert rewritten == []             # written in bf16 directly, not as fp32 and then converted
    run_dir = setup["runs"] / "bf16"
    base_keys = set(load_file(str(tmp_path / "tiny" / "model.safetensors")))
    for step in (2, 4):
        weights = load_file(str(run_dir / f"checkpoint-{step}" / "model.safetensors"))
        assert all(t.dtype == torch.bfloat16 for t in weights.values())
        assert set(weights) == base_keys   # the tied output embedding is not written a second time
        assert json.loads((run_dir / f"checkpoint-{step}" / "config.json").read_text())["dtype"] == "bfloat16"
        assert (run_dir / f"checkpoint-{step}" / "optimizer.pt").is_file()
    model = modelio.load_causal_lm(str(run_dir / "checkpoint-4"), dtype="fp32", device="cpu")
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_a_bf16_run_resumes_from_its_fp32_master_weights_bit_for_bit(setup, monkeypatch):
    from util_public.training.rundir import MASTER_WEIGHTS

    common = ["model.base=tiny-base", "data.index_end=10", "train.epochs=3", "train.learning_rate=1e-3",
              "save.dtype=bf16", *FAST]
    assert train("phase1", *common, "save.run_name=A", "train.stop_after_epochs=1") == 0
    assert (setup["runs"] / "A" / "checkpoint-5" / MASTER_WEIGHTS).is_file()
    with monkeypatch.context() as patch:
        steps = executed_steps(patch)
        assert train("phase1", *common, "save.run_name=A") == 0
    assert steps == list(range(5, 15))        # resumed at step 5, not retrained from 0
    assert train("phase1", *common, "save.run_name=B") == 0
    assert not (setup["runs"] / "A" / "checkpoint-5" / MASTER_WEIGHTS).exists()   # pruned with the optimizer
    for file in ("model.safetensors", MASTER_WEIGHTS):
        resumed, straight = (load_file(str(setup["runs"] / name / "checkpoint-15" / file)) for name in "AB")
        assert resumed.keys() == straight.keys()
        assert [k for k in straight if not torch.equal(resumed[k], straight[k])] == [], file


def test_bf16_copies_keep_tied_tensors_one_tensor():
    from conftest import tiny_model

    from util_public.training.trainer import bf16_copies

    state = tiny_model(32).state_dict()
    state["counter"] = torch.arange(3)
    copies = bf16_copies(state)
    assert copies["lm_head.weight"] is copies["model.embed_tokens.weight"]
    assert copies["counter"] is state["counter"] and copies["model.norm.weight"].dtype == torch.bfloat16
    assert torch.equal(copies["lm_head.weight"], state["lm_head.weight"].to(torch.bfloat16))


def test_full_state_none_drops_optimizer_state_once_complete(setup, monkeypatch):
    from transformers import Trainer

    written, save_state = [], Trainer._save_optimizer_and_scheduler

    def recording(self, output_dir):
        written.append(self.state.global_step)
        save_state(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", recording)
    assert train("phase1", "model.base=tiny-base", "data.index_end=4", "train.epochs=2", "save.full_state=none",
                 "train.optim=adamw_torch", "save.run_name=light", *FAST) == 0
    assert written == [2]     # resumable mid-run; the last step's state would only be deleted again
    run_dir = setup["runs"] / "light"
    assert (run_dir / "DONE").is_file()
    for step in (2, 4):
        checkpoint = run_dir / f"checkpoint-{step}"
        assert (checkpoint / "model.safetensors").is_file()
        assert not (checkpoint / "optimizer.pt").exists() and not list(checkpoint.glob("rng_state*"))

    (run_dir / "DONE").unlink()       # killed after the last checkpoint: without resume state it retrains from 0
    assert train("phase1", "model.base=tiny-base", "data.index_end=4", "train.epochs=2", "save.full_state=none",
                 "train.optim=adamw_torch", "save.run_name=light", *FAST) == 0
    steps = [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]
    assert steps == [1, 2, 2, 3, 4, 4]        # one step record per step, and each epoch's record, once


def _safetensors_full_disk():
    from safetensors import SafetensorError

    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


# (where the disk fails, the error as that writer raises it, the reason the message must quote)
WRITE_FAILURES = [
    ("state", OSError(28, "No space left on device"), "No space left on device"),
    # torch.save's zip writer on a full disk (seen on a 0.5B run): no errno reaches Python
    ("state", RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3951822848 vs 3951822740"),
     "unexpected pos 3951822848"),
    ("state", RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"),
     "PytorchStreamWriter failed"),
    # safetensors' own type, a bare Exception (the demo on a full disk printed its traceback)
    ("state", _safetensors_full_disk(), "No space left on device (os error 28)"),
    # after the trainer's writes: completing the staged directory (fsync reports delayed allocation)
    ("finalize", OSError(28, "No space left on device"), "No space left on device"),
]


def _fail_at_step_4(monkeypatch, where, error):
    """Make the checkpoint of step 4 fail in `where`; returns the undo."""
    from transformers import Trainer

    from util_public.training import rundir

    owner, name = (Trainer, "_save_optimizer_and_scheduler") if where == "state" else (rundir, "_fsync_tree")
    real = getattr(owner, name)

    def failing(*args):        # the last argument: the staged checkpoint-<step> directory
        if Path(args[-1]).name == "checkpoint-4":
            raise error
        return real(*args)

    monkeypatch.setattr(owner, name, failing)
    return lambda: monkeypatch.setattr(owner, name, real)


@pytest.mark.parametrize("where, error, reason", WRITE_FAILURES,
                         ids=["enospc", "zip-pos", "zip-writer", "safetensors", "finalize-enospc"])
def test_a_failed_checkpoint_write_names_the_checkpoint_and_the_rerun_resumes(setup, monkeypatch, where, error,
                                                                             reason):
    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=3", "save.run_name=full", *FAST]
    undo = _fail_at_step_4(monkeypatch, where, error)
    with pytest.raises(UserError) as failed:
        train("phase1", *common)
    run_dir = setup["runs"] / "full"
    message = failed.value.message
    assert message.startswith(f"error: {run_dir / 'checkpoints.tmp' / 'checkpoint-4'}: cannot write the checkpoint (")
    assert reason in message
    assert re.search(r"; \d+\.\d GiB free on its disk\)", message) and "rerunning resumes" in message
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-2"]     # nothing half-written
    undo()                                                                              # space freed
    steps = executed_steps(monkeypatch)
    assert train("phase1", *common) == 0
    assert steps == [2, 3, 4, 5]              # resumed after step 2: only steps 3-6 ran
    assert manifest(run_dir)["invocations"][-1]["resumed_from"] == "checkpoint-2" and (run_dir / "DONE").is_file()


def test_a_checkpoint_error_that_is_not_a_write_failure_is_not_relabelled(setup, monkeypatch):
    from transformers import Trainer

    def broken(self, output_dir):
        raise RuntimeError("a bug, not a disk")

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", broken)
    with pytest.raises(RuntimeError, match="a bug, not a disk"):
        train("phase1", "model.base=tiny-base", "data.index_end=4", "train.epochs=1", *FAST)


def test_relation_syntax_loads_each_relation(setup):
    other = [facts.Fact(i, "71", f"Book {i}", f"writer {i}", ["x"]) for i in (0, 1, 2, 4)]
    facts.write_facts(facts.relation_file(setup["data"], "sync_random_o", "71"), other)
    together = load_selection("50+71", setup["data"], "sync_random_o", 0, 3)
    assert {g.name: [f.fact_id for f, in g.rows] for g in together.groups} == {"50": [0, 1, 2], "71": [0, 1, 2]}
    assert [g.name for g in together.groups] == ["50", "71"]
    with pytest.raises(UserError, match=r"data.relation_id 71: .*\[0, 5\) holds 4 of its 5 fact_ids \(missing 3\)"):
        load_selection("50+71", setup["data"], "sync_random_o", 0, 5)   # never silently fewer facts
    with pytest.raises(UserError, match=r"relation 71 lacks fact_ids \[3, 5, 6"):      # all facts: no range to check
        load_selection("50&71", setup["data"], "sync_random_o", 0, None)
    with pytest.raises(UserError, match=r"data.relation_id 71: .*\[0, 6\) lies outside the data"):
        load_selection("50+71", setup["data"], "sync_random_o", 0, 6)   # never silently fewer facts
    paired = load_selection("50&71", setup["data"], "sync_random_o", 0, 3)
    assert [(a.fact_id, b.head) for a, b in paired.groups[0].rows] == [(0, "Book 0"), (1, "Book 1"), (2, "Book 2")]
    with pytest.raises(UserError, match="no fact file"):
        load_selection("50+12", setup["data"], "sync_random_o", 0, 5)


def test_gradient_accumulation_in_a_masked_mode_equals_one_big_batch(setup, tmp_path):
    """2 per device x 4 accumulated and 8 x 1 see the same 8 examples per optimizer step; in loss.mode=o
    the micro-batches hold different numbers of label tokens, so only a loss normalised by the whole
    accumulated batch's label count (`num_items_in_batch`) gives the big batch's gradient. Measured: a
    per-micro-batch mean moves some weight by 2.8e-3 after 4 steps; fp32 summation order by 1.2e-7."""
    common = ["model.base=tiny-base", "data.index_end=16", "data.train_text_type=hgp-0", "loss.mode=o",
              "train.epochs=2", "train.learning_rate=1e-3", "train.warmup_steps=1", "train.precision=fp32",
              "train.num_threads=1", "save.every_epoch=false"]
    assert train("phase1", *common, "train.per_device_train_batch_size=2", "train.gradient_accumulation_steps=4",
                 "save.run_name=accumulated") == 0
    assert train("phase1", *common, "train.per_device_train_batch_size=8", "save.run_name=big") == 0
    runs = {name: setup["runs"] / name for name in ("accumulated", "big")}
    assert manifest(runs["accumulated"])["effective_batch"] == manifest(runs["big"])["effective_batch"] == 8
    accumulated, big = (load_file(str(r / "checkpoint-4" / "model.safetensors")) for r in runs.values())
    base = load_file(str(tmp_path / "tiny" / "model.safetensors"))
    assert max((big[k][: base[k].shape[0]] - base[k]).abs().max() for k in base) > 1e-3     # it trained
    assert accumulated.keys() == big.keys()
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], atol=1e-6, rtol=0)
    losses = {name: [r["loss"] for r in map(json.loads, (r_ / "metrics.jsonl").read_text().splitlines())
                     if r["type"] == "step"] for name, r_ in runs.items()}
    assert len(losses["big"]) == 4
    assert losses["accumulated"] == pytest.approx(losses["big"], rel=1e-5)


def test_the_epoch_mean_loss_does_not_depend_on_the_logging_interval(setup):
    """With train.logging_steps=2 and 3 steps per epoch, an epoch's last step was logged in the next
    epoch (the last epoch's never), so each epoch's mean mixed in a step of another."""
    common = ["model.base=tiny-base", "data.index_end=10", "train.epochs=3", "train.per_device_train_batch_size=2",
              "train.gradient_accumulation_steps=2", "train.warmup_steps=1", "train.precision=fp32",
              "train.num_threads=1", "save.every_epoch=false"]
    records = {}
    for every in (1, 2):
        assert train("phase1", *common, f"train.logging_steps={every}", f"save.run_name=log{every}") == 0
        lines = (setup["runs"] / f"log{every}" / "metrics.jsonl").read_text().splitlines()
        records[every] = [json.loads(line) for line in lines]
    steps = {every: [r["step"] for r in rs if r["type"] == "step"] for every, rs in records.items()}
    assert steps == {1: list(range(1, 10)), 2: [2, 3, 4, 6, 8, 9]}     # every 2nd, and each epoch's last
    means = {every: [r["mean_loss"] for r in rs if r["type"] == "epoch"] for every, rs in records.items()}
    assert len(means[1]) == 3 and means[2] == pytest.approx(means[1], rel=1e-6)


def test_a_phase_two_on_facts_its_base_never_trained_is_warned_about(setup, capsys):
    """`phase2 model.base_run=X` alone trained relation 50 of sync_random_o, whatever X memorized."""
    common = ["train.epochs=1", "data.index_end=4", *FAST]
    vocab = catalogue.vocab("71")
    facts.write_facts(facts.relation_file(setup["data"], "sync_random_o", "71"),
                      [facts.Fact(i, "71", h, vocab[i], ["a", "b", "c"]) for i, h in enumerate(HEADS[:6])])
    assert train("phase1", "model.base=tiny-base", "data.relation_id=71", "save.run_name=P1", *common) == 0
    capsys.readouterr()
    assert train("phase2", "model.base_run=P1", "save.run_name=wrong", *common) == 0
    assert ("warning: this stage trains relation(s) 50 of sync_random_o; its base P1_checkpoint-2 trained 71 of "
            "sync_random_o") in capsys.readouterr().err
    assert train("phase2", "model.base_run=P1", "data.relation_id=71", "save.run_name=right", *common) == 0
    assert "warning:" not in capsys.readouterr().err


def test_a_phase_two_on_facts_its_phase_one_never_memorized_is_warned_about(setup, capsys):
    """Phase 2 should unlock memorized facts: facts 4-5, beyond Phase 1's 0-3, are named."""
    common = ["train.epochs=1", *FAST]
    assert train("phase1", "model.base=tiny-base", "data.index_end=4", "save.run_name=P1", *common) == 0
    capsys.readouterr()
    assert train("phase2", "model.base_run=P1", "data.index_begin=2", "data.index_end=6", "save.run_name=beyond",
                 *common) == 0
    assert ("warning: this Phase 2 trains facts of sync_random_o that Phase 1 of its base P1_checkpoint-2 never "
            "memorized, so it teaches them rather than unlocking them: relation 50: facts 4-5 (it memorized 0-3)"
            ) in capsys.readouterr().err
    assert train("phase2", "model.base_run=P1", "data.index_end=4", "save.run_name=within", *common) == 0
    assert "warning:" not in capsys.readouterr().err


# data.rehearsal: real facts trained beside a stage's own, never counted as its facts, never the probe's.
REHEARSE = 'data.rehearsal=[{relation_id:"50",train_text_type:hgp-0,index_end:3}]'


def test_rehearsal_texts_follow_the_stage_s_own_and_their_labels_decode_to_true_objects(setup):
    tokenizer, encoded = run.examples(run.compose("phase1", ["model.base=tiny-base", "data.index_end=4", REHEARSE]))
    real = known.load("50", known.REHEARSAL).facts[:3]
    assert [(t.fact_id, t.rehearsal) for t in encoded.texts] == [(i, False) for i in range(4)] + [(i, True) for i in range(3)]
    for text, masked, fact in zip(encoded.texts[4:], encoded.masked[4:], real):
        assert text.text == f"The capital of {fact.subject} is {fact.object}."
        labelled = [tok for tok, label in zip(masked.input_ids, masked.labels) if label != -100]
        assert tokenizer.decode(labelled).strip() == text.text    # phase 1's loss: every token
    assert encoded.trained_fact_ids() == {"50": [0, 1, 2, 3]}
    assert encoded.trained_fact_ids(rehearsal=True) == {"50": [0, 1, 2]}


def test_a_rehearsal_run_records_its_facts_apart_and_gets_its_own_name(setup, capsys):
    common = ["model.base=tiny-base", "data.index_end=4", "train.epochs=1", *FAST]
    assert train("phase1", *common) == 0
    assert train("phase1", *common, REHEARSE) == 0
    [plain] = [p for p in setup["runs"].iterdir() if "_reh" not in p.name]
    assert [p.name for p in setup["runs"].iterdir() if "_reh" in p.name] == [plain.name + naming.rehearsal_tag(
        [{"relation_id": "50", "train_text_type": "hgp-0", "index_begin": 0, "index_end": 3}])]
    rehearsed = setup["runs"] / (plain.name + "_reh2c53e9ed")
    [checkpoint] = sorted(rehearsed.glob("checkpoint-*"))
    meta = CheckpointMeta.of(checkpoint)
    assert meta.trained_fact_ids == {"50": [0, 1, 2, 3]} and meta.rehearsal_fact_ids == {"50": [0, 1, 2]}
    assert CheckpointMeta.of(sorted(plain.glob("checkpoint-*"))[0]).rehearsal_fact_ids is None
    records = [json.loads(line) for line in (rehearsed / "data" / "train_texts.jsonl").read_text().splitlines()]
    assert [r.get("rehearsal", False) for r in records] == [False] * 4 + [True] * 3
    files = json.loads((rehearsed / "manifest.json").read_text())["data_fingerprint"]["files"]
    assert any(f.endswith("rehearsal/50.yaml") for f in files)


@pytest.mark.parametrize("override, needles", [
    ('data.rehearsal=[{relation_id:"50+71"}]', ("data.rehearsal[0].relation_id", "one relation id")),
    ('data.rehearsal=[{relation_id:"7"}]', ("data.rehearsal[0]: relation 7", "no rehearsal-fact file", "exist for relations")),
    ('data.rehearsal=[{relation_id:"50",index_begin:5,index_end:5}]', ("data.rehearsal[0].index_end", "must exceed")),
    ('data.rehearsal=[{relation_id:"50",index_begin:500}]', ("data.rehearsal[0]: index_begin/index_end", "outside the data")),
    ('data.rehearsal=[{relation_id:"50",train_text_type:hgp-x}]', ("data.rehearsal[0].train_text_type", "hgp-x")),
    ('data.rehearsal=[{relation_id:"50",train_text_type:"hgp-0&wiki"}]',
     ("data.rehearsal[0].train_text_type", "no wiki paragraph")),
    ('data.rehearsal=[{relation:"50"}]', ("Key 'relation' not in 'RehearsalSource'",)),
], ids=["composite", "no file", "empty range", "past the end", "bad text type", "wiki", "typo"])
def test_bad_rehearsal_settings_name_the_key(setup, override, needles):
    from hydra.errors import ConfigCompositionException

    with pytest.raises((UserError, ConfigCompositionException)) as err:
        train("phase1", "model.base=tiny-base", "data.index_end=4", override, "train.dry_run=true")
    message = f"{err.value} {err.value.__cause__}"     # Hydra names the unknown key in the cause
    for needle in needles:
        assert needle in message
    assert not setup["runs"].exists()


def test_a_rehearsal_file_that_asks_about_a_probed_subject_is_refused(tmp_path, monkeypatch):
    probe = known.load("50")
    folder = tmp_path / "rehearsal"
    folder.mkdir()
    text = known.path("50", known.REHEARSAL).read_text()
    (folder / "50.yaml").write_text(text + f'  - {{subject: "{probe.facts[3].subject}", object: "{probe.facts[3].object}"}}\n')
    monkeypatch.setitem(known.FOLDERS, known.REHEARSAL, folder)
    with pytest.raises(UserError, match=r"facts\[60\].*locality probe's facts\[3\].*void the control"):
        known.load("50", known.REHEARSAL)


@pytest.mark.parametrize("relation_id", known.available(known.REHEARSAL))
def test_every_shipped_rehearsal_file_is_disjoint_from_its_probe(relation_id):
    rehearsal = known.load(relation_id, known.REHEARSAL)      # loading checks it
    assert len(rehearsal.facts) >= 1


def test_a_diverged_run_stops_at_the_first_non_finite_loss(setup):
    """An absurd (finite) learning rate makes the weights huge at the first step with a learning
    rate (warmup starts at 0), and the next forward overflows. The stock Trainer logged such losses
    as the mean of the earlier ones and the run registered a model that answers NaN; now the first
    non-finite loss or gradient norm stops the run before that step's checkpoint, and the message names the
    checkpoint whose weights gave it."""
    with pytest.raises(UserError) as failed:
        train("phase1", "model.base=tiny-base", "data.index_end=4", "train.epochs=3", "train.learning_rate=1e30",
              "save.run_name=diverged", *FAST)
    message = failed.value.message
    assert re.fullmatch(r"error: train: the (loss|grad norm) is (nan|inf) at step 3: training diverged; nothing of this step is "
                        r"saved \(a checkpoint of step 2, if one was saved, holds the weights that gave it\); "
                        r"lower train.learning_rate.+", message), message
    run_dir = setup["runs"] / "diverged"
    assert manifest(run_dir)["status"] == "failed" and not (run_dir / "DONE").exists()
    assert [p.name for p in run_dir.glob("checkpoint-*")] == ["checkpoint-2"]      # the epoch before: kept
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "step"] == [1, 2]        # strict JSON: no NaN record
