"""Checkpoint bookkeeping: a checkpoint counts once it is in place, registered and recorded.

Three steps make a checkpoint usable, and no file system can do them as one:
1. **move**: the complete staged directory is renamed to `{run}/checkpoint-{step}/` (its
   `mtg_meta.json` already names its epoch, step, phase and config hash);
2. **register**: `{run_name}_checkpoint-{step}` is merged into `models.json`;
3. **record**: the run manifest maps the epoch to that step and registry name.

A process can die between any two of them. The directory in place is therefore the commitment,
and the other two are derived from it: `reconcile()` registers and records every checkpoint in
place that lacks either, and the training stage calls it on every (re)start, on the
"already complete" path, and before it may write `DONE`. `preflight()` proves before training
that the registry can be written and that no future checkpoint name maps elsewhere.

API (rank 0 only): `CheckpointBooks(run, registry, overwrite)`, `.preflight(steps)`,
`.commit(staged, meta, save_dtype)`, `.reconcile()`, `.outstanding()`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import META_FILE, CheckpointMeta, RunManifest
from ..errors import UserError
from ..registry import Registry
from . import naming
from .rundir import RunDir

log = logging.getLogger("mtg.training")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint directory in place, as its `mtg_meta.json` describes it."""
    directory: Path
    epoch: int
    step: int
    phase: int
    config_hash: str | None
    name: str                      # its registry name


class CheckpointBooks:
    def __init__(self, run: RunDir, registry: Registry, overwrite: bool = False):
        self.run = run
        self.registry = registry
        self.overwrite = overwrite

    # ---- the three steps ---------------------------------------------------------------------
    def commit(self, staged: Path, meta: CheckpointMeta, save_dtype: str) -> Checkpoint:
        """Move a complete staged checkpoint into place, register it, record it (in this order)."""
        final = self.run.finalize_checkpoint(staged, meta, save_dtype)
        checkpoint = self._describe(final)
        self._register([checkpoint])
        self.run.record_checkpoints([(checkpoint.epoch, checkpoint.step, checkpoint.name)])
        return checkpoint

    def reconcile(self) -> list[Checkpoint]:
        """Register and record every checkpoint in place that a killed process left unregistered
        or unrecorded, and unregister this run's checkpoints that are no longer in place (a restart
        set them aside: their entries pointed at nothing); returns all checkpoints in place, by step."""
        if self.run.manifest is None:
            self.run.manifest = self.run.read_manifest() or RunManifest()
        in_place = [self._describe(path) for _, path in self.run.checkpoints()]
        dangling = self._dangling()     # set aside by train.resume=restart, or deleted
        if dangling:
            gone = self.registry.prune_missing(dangling)
            log.info("unregistered %d checkpoint(s) no longer in %s: %s", len(gone), self.run.path, ", ".join(gone))
        unregistered = [c for c in in_place if not self._registered(c)]
        if unregistered:
            self._register(unregistered)
            log.info("registered %d checkpoint(s) a previous invocation left unregistered: %s",
                     len(unregistered), ", ".join(c.name for c in unregistered))
        unrecorded = [c for c in in_place if not self._recorded(c)]
        if unrecorded:
            self.run.record_checkpoints([(c.epoch, c.step, c.name) for c in unrecorded])
            log.info("recorded %d checkpoint(s) missing from the manifest: %s",
                     len(unrecorded), ", ".join(c.name for c in unrecorded))
        return in_place

    def outstanding(self) -> list[Checkpoint]:
        """Checkpoints in place that are not both registered and recorded (empty: books balance)."""
        return [c for c in (self._describe(p) for _, p in self.run.checkpoints())
                if not (self._registered(c) and self._recorded(c))]

    def preflight(self, steps: list[int]) -> None:
        """Before training: the registry is writable (probed under its lock), and `check_names`."""
        self.registry.check_writable()
        self.check_names(steps)

    def check_names(self, steps: list[int]) -> None:
        """No checkpoint name this run will register (at `steps`) already maps to another path."""
        if self.overwrite:
            return
        raw = self.registry.raw()
        for step in steps:
            name = naming.checkpoint_name(self.run.run_name, step)
            if name in raw:
                old = self.registry.entry(name, raw[name]).get("path")
                new = str((self.run.path / f"checkpoint-{step}").resolve())
                if old != new:
                    raise UserError(f"{self.registry.path}: {name}", f"already maps to {old}, not {new}",
                                    "set registry.overwrite=true, or remove the stale entry")

    # ---- helpers -----------------------------------------------------------------------------
    def _describe(self, directory: Path) -> Checkpoint:
        meta = CheckpointMeta.of(directory) or CheckpointMeta()
        step = int(directory.name.removeprefix("checkpoint-"))
        if meta.epoch is None:
            raise UserError(str(directory / META_FILE), "has no epoch",
                            "remove the damaged checkpoint and rerun to retrain it")
        return Checkpoint(directory, meta.epoch, step, meta.phase or 1, meta.config_hash,
                          naming.checkpoint_name(self.run.run_name, step))

    def _entry(self, c: Checkpoint) -> dict:
        return {"path": self.registry.relative_path(c.directory), "kind": "checkpoint", "run": self.run.run_name,
                "phase": c.phase, "epoch": c.epoch, "step": c.step, "config_hash": c.config_hash}

    def _register(self, checkpoints: list[Checkpoint]) -> None:
        self.registry.register({c.name: self._entry(c) for c in checkpoints}, overwrite=self.overwrite)

    def _dangling(self) -> list[str]:
        """Registry names whose path is a checkpoint folder of this run directory that is gone."""
        raw, here = self.registry.raw(), self.run.path.resolve()
        paths = {n: Path(self.registry.entry(n, v).get("path") or "") for n, v in raw.items()}
        return [n for n, p in paths.items() if p.parent == here and not p.is_dir()]

    def _registered(self, c: Checkpoint) -> bool:
        raw = self.registry.raw()
        return c.name in raw and self.registry.entry(c.name, raw[c.name]).get("path") == str(c.directory.resolve())

    def _recorded(self, c: Checkpoint) -> bool:
        return self.run.manifest.records(c.epoch, c.step, c.name)
