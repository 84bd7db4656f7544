"""The run directory (SPEC §3.5): resume decisions, the manifest, and complete checkpoints.

Layout: `config.yaml`, `overrides.yaml`, `manifest.json` (`artifacts.RunManifest`),
`data/train_texts.jsonl`, `logs/train.log`, `metrics.jsonl`, `loss_curve.png`,
`checkpoint-{step}/`, and `DONE` last.

Checkpoints are written by the Trainer into `checkpoints.tmp/checkpoint-{step}/`; only when that
directory is complete (weights, tokenizer, trainer state, `mtg_meta.json`, all fsynced) is it
renamed to `checkpoint-{step}/`; registering and recording it follow (`bookkeeping.py`). A final
name therefore never holds a partial checkpoint, and resume only ever sees complete ones. Only
rank 0 calls the writing methods, and only while it holds the run's lock (`lock()`): a second
process writing the same run directory stops with "already running".
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import atomicio, locking, runinfo, textio
from ..artifacts import CHECKPOINT_PREFIX, MANIFEST_FILE, META_FILE, CheckpointMeta, RunManifest
from ..errors import UserError
from .confighash import StageHash

log = logging.getLogger("mtg.training")

STAGING = "checkpoints.tmp"      # the Trainer's staging folder; removed on the next start under the run lock
# Resume state kept only in the newest checkpoint under `save.full_state: last`. RNG files go
# first when pruning, so a checkpoint that still has them always has the rest.
_RNG_GLOB = "rng_state*.pth"
# `save.dtype: bf16` publishes rounded weights; resume needs the fp32 ones (written by MtgTrainer).
MASTER_WEIGHTS = "fp32_master/model.safetensors"
_OTHER_STATE_GLOBS = ("optimizer*", "scheduler*.pt", "scaler.pt", "global_step*", "latest",
                      "pytorch_model_fsdp*",   # FSDP's resume copy of the weights (model.safetensors stays)
                      MASTER_WEIGHTS.split("/")[0])
_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "global_step*")


@dataclass
class Decision:
    action: str                       # fresh | resume | restart | complete
    checkpoint: Path | None = None    # for resume: the newest complete checkpoint with full state

    @property
    def step(self) -> int:
        """The step training continues from (0 when it starts from the base model)."""
        return int(self.checkpoint.name[len(CHECKPOINT_PREFIX):]) if self.checkpoint else 0


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunDir:
    def __init__(self, path: Path, run_name: str):
        self.path = Path(path)
        self.run_name = run_name
        self.manifest: RunManifest | None = None

    # ---- paths ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def done_path(self) -> Path:
        return self.path / "DONE"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "logs" / "train.log"

    @property
    def texts_path(self) -> Path:
        return self.path / "data" / "train_texts.jsonl"

    @property
    def staging(self) -> Path:
        return self.path / STAGING

    def lock(self):
        """Held by the one process that writes this run directory (a sibling lock file, so that
        it survives `train.resume=restart` moving the directory aside)."""
        return locking.sole_writer(self.path.with_name(f".{self.path.name}.lock"), self.path)

    # ---- reading -------------------------------------------------------------------------
    def read_manifest(self) -> RunManifest | None:
        """The manifest, its fields' JSON types checked (None when there is none)."""
        if not self.manifest_path.is_file():
            return None
        return RunManifest.read(self.manifest_path)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (renamed into place, with mtg_meta.json and weights), by step."""
        if not self.path.is_dir():
            return []
        found = []
        for d in self.path.glob(f"{CHECKPOINT_PREFIX}*"):
            step = d.name[len(CHECKPOINT_PREFIX):]
            if d.is_dir() and step.isdigit() and (d / META_FILE).is_file() and has_weights(d):
                found.append((int(step), d))
        return sorted(found)

    def resumable(self) -> Path | None:
        """The newest complete checkpoint that still holds optimizer, scheduler and RNG state."""
        for _, path in reversed(self.checkpoints()):
            if has_full_state(path):
                return path
        return None

    def decide(self, stage: StageHash, resume: str) -> Decision:
        """What to do with this run directory; pure (nothing is changed), so every rank agrees."""
        if not self.path.exists():
            return Decision("fresh")
        if resume == "never":
            raise UserError(str(self.path), "the run directory exists and train.resume=never",
                            "remove it, or use train.resume=auto|restart")
        old = self.read_manifest()
        if old is None:
            raise UserError(str(self.path), "exists but has no manifest.json (not a run directory of this project?)",
                            "remove it or choose another save.runs_root")
        same = stage.matches(old.config_hash)
        if self.done_path.exists() and same:
            return Decision("complete")
        if not same and (self.done_path.exists() or resume != "restart"):
            changed = stage.differences(old)
            raise UserError(str(self.path), "holds a run with a different config hash; differing keys: "
                            + ("; ".join(changed) if changed else "(none recorded)"),
                            "use another save.run_name, or train.resume=restart for an incomplete run")
        if resume == "restart":
            return Decision("restart")
        return Decision("resume", self.resumable())

    # ---- writing (rank 0) ----------------------------------------------------------------
    def start(self, decision: Decision, manifest: RunManifest, config_yaml: str, overrides: list[str],
              text_records: list[dict]) -> None:
        """Create or reopen the directory; fresh runs get their config, data and manifest.
        `manifest` describes this invocation; a resumed run keeps its history (created,
        checkpoints, invocations, wall time) and takes the rest from it."""
        if decision.action == "restart":
            self._set_aside()
        shutil.rmtree(self.staging, ignore_errors=True)      # a killed save's leftovers (we hold the lock)
        atomicio.clean_stale_temporaries(self.path)
        previous = self.read_manifest() if decision.action == "resume" else None
        self.path.mkdir(parents=True, exist_ok=True)
        self._keep_metrics_until(decision.step)
        self.manifest = manifest
        if previous:
            manifest.created, manifest.checkpoints = previous.created, previous.checkpoints
            manifest.invocations, manifest.wall_time_s = previous.invocations, previous.wall_time_s
            manifest.failure, manifest.extra = previous.failure, {**previous.extra, **manifest.extra}
        else:
            manifest.created = now()
        if previous:
            _warn_if_code_changed(previous.git, manifest.git)
        resumed_from = decision.checkpoint.name if decision.checkpoint else None
        # The top-level git and versions are the last invocation's; each invocation keeps its own.
        manifest.invocations.append({"started": now(), "overrides": overrides, "resumed_from": resumed_from,
                                     "machine": runinfo.machine(), "git": manifest.git,
                                     "versions": manifest.versions})
        manifest.status = "running"
        manifest.count_tokens()
        self.save_manifest()
        atomicio.write_text(self.path / "config.yaml", config_yaml)
        atomicio.write_text(self.path / "overrides.yaml", "".join(f"- {json.dumps(o)}\n" for o in overrides) or "[]\n")
        atomicio.write_jsonl(self.texts_path, text_records)

    def _keep_metrics_until(self, step: int) -> None:
        """Drop the metrics of steps after `step`: a killed invocation logged steps past its last
        checkpoint (or, without resume state, past 0) whose weights are gone and are trained again."""
        if self.metrics_path.is_file():
            records = atomicio.read_jsonl(self.metrics_path)
            atomicio.write_jsonl(self.metrics_path, [r for r in records if r.get("step", 0) <= step])

    def _set_aside(self) -> None:
        n = 1
        while self.path.with_name(f"{self.path.name}.aborted-{n}").exists():
            n += 1
        target = self.path.with_name(f"{self.path.name}.aborted-{n}")
        os.replace(self.path, target)
        log.info("moved the incomplete run directory to %s (train.resume=restart)", target)

    def save_manifest(self) -> None:
        self.manifest.write(self.manifest_path)

    def finalize_checkpoint(self, staged: Path, meta: CheckpointMeta, save_dtype: str) -> Path:
        """Complete a staged checkpoint (dtype, mtg_meta.json, fsync) and rename it into place."""
        if not has_weights(staged):
            raise RuntimeError(f"staged checkpoint {staged} has no model weights")
        if save_dtype == "bf16":
            _to_bf16(staged)
        meta.save(staged)
        _fsync_tree(staged)
        # A re-save of a step after a resume from an earlier step replaces the old directory.
        return atomicio.replace_dir(staged, self.path / staged.name)

    def record_checkpoints(self, checkpoints: list[tuple[int, int, str]]) -> None:
        """Map each (epoch, step, registry name) in the manifest, in one manifest write."""
        for epoch, step, registry_name in checkpoints:
            self.manifest.record(epoch, step, registry_name)
        self.save_manifest()

    def prune_full_state(self, keep: Path | None) -> None:
        """Delete optimizer/scheduler/RNG state from every checkpoint but `keep` (None: from all)."""
        for _, path in self.checkpoints():
            if path == keep:
                continue
            for pattern in (_RNG_GLOB, *_OTHER_STATE_GLOBS):
                for item in path.glob(pattern):
                    shutil.rmtree(item) if item.is_dir() else item.unlink()

    def add_wall_time(self, seconds: float) -> None:
        self.manifest.wall_time_s = round(self.manifest.wall_time_s + seconds, 3)

    def complete(self) -> None:
        self.manifest.status = "complete"
        self.manifest.finished = now()
        self.save_manifest()
        shutil.rmtree(self.staging, ignore_errors=True)
        atomicio.write_text(self.done_path, "")

    def fail(self, message: str) -> None:
        if self.manifest is not None:
            self.manifest.status = "failed"
            self.manifest.failure = message
            self.save_manifest()


def _warn_if_code_changed(previous, current) -> None:
    commits = [g.get("commit") if isinstance(g, dict) else None for g in (previous, current)]
    if None not in commits and commits[0] != commits[1]:
        log.warning("resuming with other code: the run's previous invocation ran commit %s, this one runs %s "
                    "(each invocation's commit is in manifest.json's invocations)", commits[0][:12], commits[1][:12])


def has_weights(path: Path) -> bool:
    return any(any(path.glob(p)) for p in _WEIGHT_GLOBS)


def has_full_state(path: Path) -> bool:
    return any(path.glob(_RNG_GLOB)) and (path / "trainer_state.json").is_file() and any(
        any(path.glob(p)) for p in _OTHER_STATE_GLOBS)


def _to_bf16(directory: Path) -> None:
    """Make the checkpoint bf16 (`save.dtype: bf16`): the config's dtype, and the weights of any
    file still holding other floating-point tensors (`MtgTrainer` already writes bf16 itself;
    a launcher that saves through another path may not)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    for file in directory.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            if all(f.get_slice(k).get_dtype() not in ("F64", "F32", "F16") for k in f.keys()):
                continue
        tensors = load_file(str(file))
        converted = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(converted, str(file), metadata={"format": "pt"})
    config = directory / "config.json"
    if config.is_file():
        data = textio.read_json(config)
        for key in ("dtype", "torch_dtype"):
            if key in data:
                data[key] = "bfloat16"
        atomicio.write_json(config, data)


def _fsync_tree(directory: Path) -> None:
    for f in directory.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
