"""Checkpoint bookkeeping under kills: a training run is SIGKILLed between moving a checkpoint into
place, registering it and recording it in the manifest, at the first and at the last checkpoint.
Every rerun must end complete, with every checkpoint registered and recorded, and Phase 2 from
`model.base_run` must start from the last checkpoint.

The run is a fork of the test process (torch already imported, so a kill costs milliseconds, not
an interpreter start); the child patches the boundary it dies at, the parent reruns in-process.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

import pytest
from conftest import save_tiny_checkpoint

from util_public import catalogue, facts
from util_public.errors import UserError
from util_public.registry import Registry
from util_public.training import base as basemodel, run
from util_public.training.rundir import RunDir

COMMON = ["model.base=tiny-base", "data.index_end=4", "train.epochs=2", "train.per_device_train_batch_size=2",
          "train.warmup_steps=1", "train.learning_rate=1e-3", "train.num_threads=1"]
STEPS = (2, 4)                               # checkpoint steps of epochs 1 and 2


@dataclass
class Fault:
    point: str          # moved: before registering | registered: before recording | recorded: after recording
    step: int           # the checkpoint it strikes
    kind: str = "kill"  # kill (SIGKILL) | fail (the registry write fails: a UserError, exit 2)


# One chain per point: killed at the first checkpoint, the rerun killed at the same point of the
# last one, the next rerun left alone. A registry that fails mid-run is the non-kill variant.
CHAINS = {f"kill-{point}": [Fault(point, 2), Fault(point, 4)] for point in ("moved", "registered", "recorded")}
CHAINS["fail-register"] = [Fault("moved", 4, "fail")]


def _strike(fault: Fault) -> None:
    if fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise UserError("registry", "cannot write (Read-only file system)")


def _inject(fault: Fault) -> None:
    """Patch the boundary the fault strikes at (in the forked child only)."""
    if fault.point == "moved":
        register = Registry.register

        def registering(self, entries, overwrite=False):
            if any(n.endswith(f"_checkpoint-{fault.step}") for n in entries):
                _strike(fault)
            return register(self, entries, overwrite)
        Registry.register = registering
        return
    record = RunDir.record_checkpoints

    def recording(self, checkpoints):
        hit = any(step == fault.step for _, step, _ in checkpoints)
        if hit and fault.point == "registered":
            _strike(fault)
        record(self, checkpoints)
        if hit and fault.point == "recorded":
            _strike(fault)
    RunDir.record_checkpoints = recording


def _train(name: str, fault: Fault | None = None) -> int:
    """Phase 1 named `name`: in a forked child with `fault` injected (its wait status), else in-process."""
    overrides = [*COMMON, f"save.run_name={name}"]
    cfg = run.compose("phase1", overrides)
    if fault is None:
        return run.train_stage(cfg, overrides)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _inject(fault)
            code = run.train_stage(cfg, overrides)
        except UserError:
            code = 2
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def _books(runs_root, name: str) -> tuple[dict, set[str]]:
    manifest = json.loads((runs_root / name / "manifest.json").read_text())
    recorded = {e["registry_name"] for e in manifest["checkpoints"].values()}
    return manifest, recorded


@pytest.fixture
def tiny_setup(isolated_roots, sp_tokenizer, tmp_path):
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    vocab = catalogue.vocab("50")
    rows = [facts.Fact(i, "50", f"Velor{c}ia", vocab[3 * i], ["opt0", "opt1"]) for i, c in enumerate("abcd")]
    facts.write_facts(facts.relation_file(isolated_roots["data"], "sync_random_o", "50"), rows)
    return isolated_roots


def test_the_fault_table_covers_every_point_at_both_checkpoints():
    kills = {(f.point, f.step) for chain in CHAINS.values() for f in chain if f.kind == "kill"}
    assert kills == {(p, s) for p in ("moved", "registered", "recorded") for s in STEPS}


def _check_struck(runs, registry, name: str, fault: Fault, status: int) -> None:
    """Right after the fault: the struck checkpoint's books are as far as the fault let them get,
    and every earlier checkpoint is fully booked (the rerun that died here reconciled it first)."""
    if fault.kind == "kill":
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (name, fault, status)
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 2, (name, fault, status)
    _, recorded = _books(runs, name)
    raw = registry.raw()
    target = f"{name}_checkpoint-{fault.step}"
    assert (runs / name / f"checkpoint-{fault.step}").is_dir() and not (runs / name / "DONE").exists()
    assert (target in raw) == (fault.point != "moved"), (name, fault)
    assert (target in recorded) == (fault.point == "recorded"), (name, fault)
    earlier = {f"{name}_checkpoint-{s}" for s in STEPS if s < fault.step}
    assert earlier <= recorded and earlier <= set(raw), (name, fault)


def _check_booked(runs, registry, name: str) -> None:
    manifest, recorded = _books(runs, name)
    assert manifest["status"] == "complete" and (runs / name / "DONE").is_file(), name
    assert recorded == {f"{name}_checkpoint-{s}" for s in STEPS}, name
    assert {e: c["step"] for e, c in manifest["checkpoints"].items()} == {"1": 2, "2": 4}, name
    raw = registry.raw()
    for step in STEPS:
        entry = registry.entry(f"{name}_checkpoint-{step}", raw[f"{name}_checkpoint-{step}"])
        assert entry["path"] == str((runs / name / f"checkpoint-{step}").resolve()) and entry["epoch"] == step // 2
    assert manifest["tokens_trained"]["total"] == 2 * manifest["tokens_trained"]["per_epoch"]
    assert basemodel.checkpoint_of_run(runs, name, None) == f"{name}_checkpoint-4", name


def test_every_kill_point_then_rerun_books_every_checkpoint(tiny_setup, monkeypatch, capsys):
    monkeypatch.setattr(run.curves, "plot", lambda *a, **k: None)    # the loss curve is not under test
    runs = tiny_setup["runs"]
    registry = Registry()
    for name, chain in CHAINS.items():
        for fault in chain:
            _check_struck(runs, registry, name, fault, _train(name, fault))
        assert _train(name) == 0, name
        _check_booked(runs, registry, name)

    # Phase 2 from the run whose last checkpoint was killed right after its move.
    p2 = ["model.base_run=kill-moved", "data.index_end=2", "train.epochs=1", "train.per_device_train_batch_size=2",
          "train.num_threads=1", "save.run_name=p2"]
    assert run.train_stage(run.compose("phase2", p2), p2) == 0
    p2_manifest, _ = _books(runs, "p2")
    assert p2_manifest["base_model"]["name"] == "kill-moved_checkpoint-4"
    assert p2_manifest["base_model"]["path"] == str((runs / "kill-moved" / "checkpoint-4").resolve())


def test_already_complete_rerun_repairs_books_of_an_old_run(tiny_setup, capsys):
    """A complete run whose registry entries and manifest records were lost (e.g. made before
    bookkeeping was reconciled, or a registry restored from a backup) is repaired, not trusted."""
    runs = tiny_setup["runs"]
    assert _train("old") == 0
    registry = Registry()
    kept = {n: v for n, v in registry.raw().items() if not n.startswith("old_")}
    registry.path.write_text(json.dumps(kept))
    manifest, _ = _books(runs, "old")
    manifest["checkpoints"] = {}
    (runs / "old" / "manifest.json").write_text(json.dumps(manifest))
    assert _train("old") == 0
    assert "already complete" in capsys.readouterr().out
    manifest, recorded = _books(runs, "old")
    assert recorded == {"old_checkpoint-2", "old_checkpoint-4"} and recorded <= set(registry.raw())


def test_registering_a_checkpoint_does_not_make_the_checkout_dirty(tmp_path, monkeypatch):
    import subprocess

    from util_public import runinfo

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    for name in ("models.json", "code.py", "other.json"):
        (tmp_path / name).write_text("{}\n")
    git("add", ".")
    git("commit", "-qm", "x")
    monkeypatch.setattr(runinfo, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("MTG_MODELS_JSON", str(tmp_path / "models.json"))
    Registry().register({"run_checkpoint-2": {"path": str(tmp_path), "kind": "checkpoint"}})
    assert runinfo.git_info()["dirty"] is False                               # the registry in use
    assert runinfo.git_info(str(tmp_path / "other.json"))["dirty"] is True    # registry.path names another file
    Registry(tmp_path / "other.json").register({"b": {"path": str(tmp_path), "kind": "checkpoint"}})
    assert runinfo.git_info(str(tmp_path / "other.json"))["dirty"] is True    # models.json is still changed
    git("checkout", "-q", "models.json")
    assert runinfo.git_info(str(tmp_path / "other.json"))["dirty"] is False
    (tmp_path / "code.py").write_text("changed\n")
    assert runinfo.git_info()["dirty"] is True
