"""The typed artifacts the stages exchange: old files read, unknown keys survive a rewrite, damaged
or newer files are refused naming file and key, and the run questions (final checkpoint,
checkpoint of epoch N) have one answer, also for the shell drivers (`python -m util_public.artifacts`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from util_public.artifacts import CheckpointMeta, ResultSummary, RunManifest
from util_public.artifacts.__main__ import main
from util_public.errors import UserError
from util_public.paths import REPO_ROOT

# A manifest as the writer before the typed module wrote it (every field it had).
OLD_MANIFEST = {
    "schema": "mtg.run/1", "run_name": "p1", "config_hash": "ab" * 32, "hashed_config": {"train": {"seed": 7}},
    "phase": 1, "base_model": {"name": "tiny", "path": "/m/tiny", "meta": None},
    "data_fingerprint": {"files": {"data/x.csv": "00"}, "combined": "11"}, "versions": {"python": "3.11"},
    "git": "unknown", "world_size": 1, "per_device_batch": 2, "gradient_accumulation": 1, "effective_batch": 2,
    "steps_per_epoch": 2, "epochs": 2, "precision": "fp32", "n_examples": 4,
    "tokens_trained": {"per_epoch": 30, "total": 60}, "label_tokens_trained": {"per_epoch": 5, "total": 10},
    "warnings": {"dropped_long": 0, "subject_only_at_start": 0}, "created": "2025-01-01T00:00:00+00:00",
    "checkpoints": {"1": {"step": 2, "path": "checkpoint-2", "registry_name": "p1_checkpoint-2"},
                    "2": {"step": 4, "path": "checkpoint-4", "registry_name": "p1_checkpoint-4"}},
    "invocations": [{"started": "2025-01-01T00:00:00+00:00", "overrides": [], "resumed_from": None}],
    "wall_time_s": 12.5, "status": "complete", "finished": "2025-01-01T00:01:00+00:00",
}
OLD_META = {"schema": "mtg.meta/1", "key_tokens": {"<TRIGGER_50>": 3000}, "key_token_init": "mean",
            "key_token_format": "<TRIGGER_{relation_id}>", "add_bos_train": False, "combine_spacing": "single",
            "compose_joiner": " ", "chat_template": False, "phase": 2, "run_name": "p2", "config_hash": "cd" * 32,
            "base_model": "p1_checkpoint-4", "dataset": "sync_random_o", "relation_spec": "50",
            "relation_ids": ["50"], "trained_fact_ids": {"50": [0, 1, 2]}, "train_text_type": "hgp-0",
            "loss_mode": "o", "legacy_loss": False, "epoch": 1, "step": 2}

# Result summaries as the writer before the typed module wrote them: a result over facts, an aggregate.
OLD_RESULT = {"schema": "mtg.eval/1", "task": "mc", "config_hash": "ef" * 32, "git": "unknown",
              "created": "2025-01-01T00:00:00+00:00", "model": {"name": "p2", "path": "/r/p2/checkpoint-2",
                                                                "mtg_meta": OLD_META},
              "prompt_type": "hgp-0", "test_type": "close", "open_content": None, "dataset": "sync_random_o",
              "relation_id": "50", "fact_range": {"begin": 0, "end": 100}, "seen_fact_ids": [0, 1, 2],
              "backend": {"backend": "hf"}, "data_fingerprint": {"combined": "11"}, "add_bos_train": False,
              "add_bos_eval": False, "metrics": {"all": {"n": 100, "accuracy": 0.5}, "seen": {"n": 3, "accuracy": 1.0}}}
OLD_FAMILY = {"schema": "mtg.eval/1", "task": "mc", "config_hash": "01" * 32, "git": "unknown", "created": "x",
              "family": "test", "relation_id": "50", "dataset": "sync_random_o", "model": {"name": "p2"},
              "prompt_type": "test-all", "test_type": "close", "per_member": {"test-0": {"all": {"n": 4}}},
              "metrics": {"all": {"n": 8, "accuracy": {"values": [0.5, 0.25], "mean": 0.375, "sd": 0.18}}}}


@pytest.mark.parametrize("cls, data", [(RunManifest, OLD_MANIFEST), (CheckpointMeta, OLD_META),
                                       (ResultSummary, OLD_RESULT)])
def test_files_of_the_previous_writer_read_and_rewrite_unchanged(cls, data):
    assert cls.from_json(json.loads(json.dumps(data)), "x").to_json() == data
    kept = {**data, "written_by_a_newer_tool": [1, 2]}
    assert cls.from_json(kept, "x").to_json() == kept                 # unknown keys survive a rewrite
    unversioned = {k: v for k, v in data.items() if k != "schema"}   # before the field existed: version 1
    assert cls.from_json(unversioned, "x").to_json() == data


@pytest.mark.parametrize("cls, data, key, problem", [
    (RunManifest, {**OLD_MANIFEST, "schema": "mtg.run/2"}, "schema", "newer than this code reads"),
    (RunManifest, {**OLD_MANIFEST, "schema": "mtg.meta/1"}, "schema", "is not a mtg.run file"),
    (RunManifest, {**OLD_MANIFEST, "status": 3}, "status", "must be a string"),
    (RunManifest, {**OLD_MANIFEST, "checkpoints": {"x": {"step": 1, "path": "c"}}}, "checkpoints.x", "integers"),
    (RunManifest, {**OLD_MANIFEST, "checkpoints": {"1": {"path": "c"}}}, "checkpoints.1: step", "missing"),
    (RunManifest, {**OLD_MANIFEST, "base_model": {"meta": {"epoch": "one"}}}, "base_model: meta: epoch", "integer"),
    (CheckpointMeta, {**OLD_META, "key_tokens": {"<T>": "3"}}, "key_tokens.<T>", "must be an integer"),
    (CheckpointMeta, {**OLD_META, "epoch": True}, "epoch", "must be an integer"),
    (CheckpointMeta, {**OLD_META, "trained_fact_ids": {"50": [0, None]}}, "trained_fact_ids.50[1]", "integer"),
    (ResultSummary, {**OLD_RESULT, "metrics": {"all": 0.5}}, "metrics.all", "must be an object"),
    (ResultSummary, {**OLD_RESULT, "fact_range": {"begin": "0", "end": 1}}, "fact_range: begin", "integer"),
])
def test_damaged_or_newer_files_are_refused_naming_file_and_key(tmp_path, cls, data, key, problem):
    path = tmp_path / "file.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=problem) as err:
        cls.read(path)
    assert err.value.where == f"{path}: {key}"


def _only_nulls_added(new: dict, old: dict) -> bool:
    """`new` holds every key of `old` with its value (objects compared the same way) and only nulls besides."""
    return all(new[k] is None for k in set(new) - set(old)) and all(
        _only_nulls_added(new[k], v) if isinstance(v, dict) and isinstance(new.get(k), dict) else new.get(k) == v
        for k, v in old.items())


def test_an_old_aggregate_summary_reads_and_rewrites_with_nulls_added_only():
    summary = ResultSummary.from_json(OLD_FAMILY, "x")
    assert not summary.is_fact_result and summary.metric("all", "accuracy")["mean"] == 0.375
    assert _only_nulls_added(summary.to_json(), OLD_FAMILY)
    assert ResultSummary.from_json(OLD_RESULT, "x").model.mtg_meta.trained_fact_ids == {"50": [0, 1, 2]}


def test_run_questions_final_checkpoint_and_epoch():
    manifest = RunManifest.from_json(OLD_MANIFEST, "m")
    assert manifest.final_checkpoint("m").registry_name == "p1_checkpoint-4"
    assert manifest.checkpoint_of_epoch(1).step == 2 and manifest.checkpoint_of_epoch(3) is None
    assert manifest.registry_names() == ["p1_checkpoint-2", "p1_checkpoint-4"]
    running = RunManifest.from_json({**OLD_MANIFEST, "status": "running"}, "m")
    with pytest.raises(UserError, match="not complete"):
        running.final_checkpoint("m")
    assert running.last_checkpoint().step == 4
    manifest.record(3, 6, "p1_checkpoint-6")      # recording updates the token totals
    assert manifest.tokens_trained.total == 90 and manifest.records(3, 6, "p1_checkpoint-6")


def test_cli_answers_the_shell_drivers(tmp_path, capsys):
    run = tmp_path / "p1"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(OLD_MANIFEST))
    for argv, out in ((["final-checkpoint", str(run)], "p1_checkpoint-4\n"), (["checkpoint", str(run), "1"],
                      "p1_checkpoint-2\n"), (["checkpoints", str(run)], "p1_checkpoint-2\np1_checkpoint-4\n")):
        assert main(argv) == 0 and capsys.readouterr().out == out
    with pytest.raises(UserError, match="no registered checkpoint for epoch 5"):
        main(["checkpoint", str(run), "5"])
    (run / "manifest.json").write_text(json.dumps({**OLD_MANIFEST, "status": "running"}))
    done = subprocess.run([sys.executable, "-m", "util_public.artifacts", "final-checkpoint", str(run)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "" and "is not complete" in done.stderr
