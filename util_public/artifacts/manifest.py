"""`manifest.json` of a run directory: what a training run is, what it produced, how far it got.

Training writes it (`training/rundir.py`, under the run's lock); the next stage, the recipes,
the demo, the collectors and the shell drivers read it, and ask it the two questions they all
need: `final_checkpoint()` (the newest recorded checkpoint of a complete run) and
`checkpoint_of_epoch(n)`. Epochs are the keys of `checkpoints` ("1", "2", ...), each mapping to
the step, the folder and the registry name of that epoch's checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError
from .checkpoint import CheckpointMeta
from .versioned import Artifact, optional

MANIFEST_FILE = "manifest.json"
CHECKPOINT_PREFIX = "checkpoint-"
READ_HINT = "remove the run directory, or set train.resume=restart"


@dataclass
class CheckpointRecord(Artifact):
    """One epoch's checkpoint as the manifest records it."""
    step: int = 0
    path: str = ""
    registry_name: Optional[str] = None

    @classmethod
    def from_json(cls, data: dict, where: str) -> CheckpointRecord:
        for key in ("step", "path"):       # a record without them would point nowhere
            if isinstance(data, dict) and key not in data:
                raise UserError(f"{where}: {key}", "is missing", READ_HINT)
        return super().from_json(data, where)


@dataclass
class TokenCount(Artifact):
    per_epoch: int = 0
    total: int = 0


@dataclass
class BaseModelRecord(Artifact):
    """The model a run started from: its registry name, directory and (our checkpoint) metadata."""
    name: Optional[str] = None
    path: Optional[str] = None
    meta: Optional[CheckpointMeta] = None


@dataclass
class RunManifest(Artifact):
    SCHEMA = "mtg.run"
    VERSION = 1

    run_name: Optional[str] = None
    config_hash: Optional[str] = None
    hashed_config: dict = field(default_factory=dict)
    phase: Optional[int] = None
    base_model: BaseModelRecord = field(default_factory=BaseModelRecord)
    data_fingerprint: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    git: Any = None
    world_size: Optional[int] = None
    per_device_batch: Optional[int] = None
    gradient_accumulation: Optional[int] = None
    effective_batch: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    epochs: Optional[int] = None
    precision: Optional[str] = None
    n_examples: Optional[int] = None
    tokens_trained: Optional[TokenCount] = None
    label_tokens_trained: Optional[TokenCount] = None
    warnings: dict = field(default_factory=dict)
    created: Optional[str] = None
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)
    invocations: list = field(default_factory=list)
    wall_time_s: float = 0.0
    status: Optional[str] = None
    finished: Optional[str] = optional()
    failure: Optional[str] = optional()

    @classmethod
    def from_json(cls, data: dict, where: str) -> RunManifest:
        manifest = super().from_json(data, where)
        for epoch in manifest.checkpoints:
            if not epoch.isdigit():
                raise UserError(f"{where}: checkpoints.{epoch}", "epoch keys must be integers", READ_HINT)
        return manifest

    @classmethod
    def of(cls, run_dir: str | Path) -> RunManifest:
        """The manifest of a run directory (a `UserError` when there is none)."""
        return cls.read(Path(run_dir) / MANIFEST_FILE, READ_HINT)

    @classmethod
    def read(cls, path: str | Path, hint: str | None = READ_HINT) -> RunManifest:
        return super().read(path, hint)

    # ---- the questions other stages ask ----------------------------------------------------
    @property
    def epochs_recorded(self) -> list[int]:
        return sorted(int(e) for e in self.checkpoints)

    def checkpoint_of_epoch(self, epoch: int) -> CheckpointRecord | None:
        return self.checkpoints.get(str(epoch))

    def last_checkpoint(self) -> CheckpointRecord | None:
        """The newest recorded checkpoint, complete run or not."""
        epochs = self.epochs_recorded
        return self.checkpoints[str(epochs[-1])] if epochs else None

    def final_checkpoint(self, where: str, epoch_key: str = "an epoch") -> CheckpointRecord:
        """The checkpoint of a complete run's last epoch (what "the run's model" means); errors
        name `where` and suggest choosing `epoch_key` instead."""
        if self.status != "complete":
            raise UserError(where, f"run {self.run_name!r} is not complete (status {self.status})",
                            f"finish it (rerun its command), or pick {epoch_key}")
        last = self.last_checkpoint()
        if last is None or not last.registry_name:
            raise UserError(where, f"run {self.run_name!r} has no registered checkpoint",
                            f"epochs with checkpoints: {self.epochs_recorded}")
        return last

    def registry_names(self) -> list[str]:
        """Registry names of every recorded checkpoint, by epoch."""
        return [self.checkpoints[str(e)].registry_name for e in self.epochs_recorded
                if self.checkpoints[str(e)].registry_name]

    # ---- what training changes -------------------------------------------------------------
    def record(self, epoch: int, step: int, registry_name: str | None) -> None:
        self.checkpoints[str(epoch)] = CheckpointRecord(step, f"{CHECKPOINT_PREFIX}{step}", registry_name)
        self.count_tokens()

    def records(self, epoch: int, step: int, registry_name: str) -> bool:
        """True when the manifest maps `epoch` to this step and registry name."""
        entry = self.checkpoint_of_epoch(epoch)
        return entry is not None and entry.step == step and entry.registry_name == registry_name

    def count_tokens(self) -> None:
        """Token totals: the per-epoch counts times the newest recorded epoch."""
        epochs = max(self.epochs_recorded, default=0)
        for count in (self.tokens_trained, self.label_tokens_trained):
            if count is not None:
                count.total = count.per_epoch * epochs
