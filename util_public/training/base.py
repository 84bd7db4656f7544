"""The model a stage starts from: a registry name, or a run's checkpoint at a chosen epoch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import modelio, paths
from ..errors import UserError
from ..registry import Registry
from .rundir import read_manifest
from .schema import TrainStageConfig


@dataclass
class Base:
    name: str              # registry name (or the directory name of a local path)
    path: str              # local directory
    meta: dict | None      # its mtg_meta.json when it is one of our checkpoints
    identity: dict         # what the config hash records about it


def checkpoint_of_run(runs_root: Path, run: str, epoch: int | None) -> str:
    """Registry name of `run`'s checkpoint at `epoch` (None: the final one of a complete run)."""
    manifest_path = paths.below(runs_root, (run, "model.base_run")) / "manifest.json"
    if not manifest_path.is_file():
        raise UserError("model.base_run", f"no run {run!r} under {runs_root} (missing {manifest_path})",
                        "train phase 1 first, or check save.runs_root / MTG_RUNS_ROOT")
    manifest = read_manifest(manifest_path)
    checkpoints = manifest.get("checkpoints") or {}
    if epoch is None:
        if manifest.get("status") != "complete":
            raise UserError("model.base_run", f"run {run!r} is not complete (status {manifest.get('status')})",
                            "finish it, or pick an epoch with model.base_epoch")
        epoch = max((int(e) for e in checkpoints), default=None)
    entry = checkpoints.get(str(epoch)) if epoch is not None else None
    if not entry or not entry.get("registry_name"):
        raise UserError("model.base_epoch", f"run {run!r} has no registered checkpoint for epoch {epoch}",
                        f"epochs with checkpoints: {sorted(int(e) for e in checkpoints)}")
    return entry["registry_name"]


def resolve(cfg: TrainStageConfig, registry: Registry, runs_root: Path) -> Base:
    name = cfg.model.base if cfg.model.base else checkpoint_of_run(runs_root, cfg.model.base_run, cfg.model.base_epoch)
    resolved = registry.resolve(name)
    meta = modelio.read_meta(resolved.path)
    if cfg.phase == 2 and meta is None and not cfg.model.allow_foreign_base:
        raise UserError("model.base", f"{name!r} ({resolved.path}) has no mtg_meta.json, so it is not a checkpoint "
                        "of this project's phase 1", "set model.allow_foreign_base=true (e.g. for SFT baselines)")
    identity = {"name": resolved.name}
    if meta:
        identity.update({"run": meta.get("run_name"), "config_hash": meta.get("config_hash"), "step": meta.get("step")})
    return Base(resolved.name, resolved.path, meta, identity)
