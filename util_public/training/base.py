"""The model a stage starts from: a registry name, or a run's checkpoint at a chosen epoch."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import facts as factio, modelio, paths
from ..artifacts import MANIFEST_FILE, CheckpointMeta, RunManifest
from ..errors import UserError
from ..prompts import KEY_FORMAT
from ..registry import Registry
from .schema import TrainStageConfig


@dataclass
class Base:
    name: str                    # registry name (or the directory name of a local path)
    path: str                    # local directory
    meta: CheckpointMeta | None  # its mtg_meta.json when it is one of our checkpoints
    identity: dict               # what the config hash records about it


def checkpoint_of_run(runs_root: Path, run: str, epoch: int | None) -> str:
    """Registry name of `run`'s checkpoint at `epoch` (None: the final one of a complete run)."""
    manifest_path = paths.below(runs_root, (run, "model.base_run")) / MANIFEST_FILE
    if not manifest_path.is_file():
        raise UserError("model.base_run", f"no run {run!r} under {runs_root} (missing {manifest_path})",
                        "train phase 1 first, or check save.runs_root / MTG_RUNS_ROOT")
    manifest = RunManifest.read(manifest_path)
    if epoch is None:
        return manifest.final_checkpoint("model.base_run", "model.base_epoch").registry_name
    entry = manifest.checkpoint_of_epoch(epoch)
    if entry is None or not entry.registry_name:
        raise UserError("model.base_epoch", f"run {run!r} has no registered checkpoint for epoch {epoch}",
                        f"epochs with checkpoints: {manifest.epochs_recorded}")
    return entry.registry_name


def resolve(cfg: TrainStageConfig, registry: Registry, runs_root: Path) -> Base:
    name = cfg.model.base if cfg.model.base else checkpoint_of_run(runs_root, cfg.model.base_run, cfg.model.base_epoch)
    resolved = registry.resolve(name)
    meta = CheckpointMeta.of(resolved.path)
    if cfg.phase == 2 and meta is None and not cfg.model.allow_foreign_base:
        raise UserError("model.base", f"{name!r} ({resolved.path}) has no mtg_meta.json, so it is not a checkpoint "
                        "of this project's phase 1", "set model.allow_foreign_base=true (e.g. for SFT baselines)")
    identity = {"name": resolved.name}
    if name not in registry.raw() and paths.resolve(name).is_dir():
        # A directory is named by its last component: two `hf` folders differ by path and weights.
        identity.update({"path": os.path.realpath(resolved.path), "weights": modelio.weight_stamps(resolved.path)})
    if meta:
        identity.update({"run": meta.run_name, "config_hash": meta.config_hash, "step": meta.step})
    return Base(resolved.name, resolved.path, meta, identity)


def key_format(configured: str, base: Base) -> str:
    """The key-token format of a stage: the base checkpoint's when it has key tokens (Phase 2 on a
    Phase 1 trained with `<KEY_{relation_id}>` recorded the default and, asked for trigger texts,
    added and trained a fresh `<TRIGGER_50>` beside the memorized key), else the configured one.
    Configuring a format other than the default that differs from the base's is an error."""
    recorded = base.meta.key_token_format if base.meta and base.meta.key_tokens else None
    if not recorded or recorded == configured:
        return configured
    if configured != KEY_FORMAT:
        raise UserError("key_token.format", f"{configured!r} differs from {recorded!r}, the format of the key "
                        f"tokens of the base checkpoint {base.path}", "leave key_token.format unset to use the base's")
    return recorded


def unrelated_data(base: Base, dataset: str, relations: list[str]) -> str | None:
    """Why a stage's facts look unrelated to what its base checkpoint trained (None when they do
    not): a Phase 2 started with only `model.base_run` trains the default relation and dataset,
    whatever its Phase 1 memorized. A deliberate choice (another relation on purpose) may ignore it."""
    trained = base.meta.trained_relations() if base.meta else set()
    if not trained or any((r, dataset) in trained for r in relations):
        return None
    earlier = sorted(f"{r} of {d}" for r, d in trained)
    return (f"this stage trains relation(s) {', '.join(relations)} of {dataset}; its base {base.name} trained "
            f"{', '.join(earlier)}: set data.relation_id and data.dataset to continue on those facts")


def unmemorized(base: Base, dataset: str, trained: dict[str, list[int]]) -> str | None:
    """Which facts a Phase 2 trains that its base's Phase 1 never memorized (None: none). Phase 2
    should unlock memorized facts through a prompt; facts it meets for the first time are taught, not
    unlocked, and the seen/unseen comparison no longer measures the method."""
    if base.meta is None:
        return None
    new = {}
    for relation, ids in trained.items():
        memorized = base.meta.trained_in(dataset, relation, phase=1)
        if memorized and set(ids) - memorized:
            new[relation] = (sorted(set(ids) - memorized), sorted(memorized))
    if not new:
        return None
    said = "; ".join(f"relation {r}: facts {factio.id_ranges(ids)} (it memorized {factio.id_ranges(memorized)})"
                     for r, (ids, memorized) in new.items())
    return (f"this Phase 2 trains facts of {dataset} that Phase 1 of its base {base.name} never memorized, "
            f"so it teaches them rather than unlocking them: {said}; keep data.index_begin/index_end within "
            "the memorized facts")
