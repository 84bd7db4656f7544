"""`mtg_meta.json`: what a project checkpoint records about itself (written by training, read by
the next training stage, evaluation, the collectors and the demo).

Every field is optional when reading (a checkpoint of an older layout, or a test's hand-made
one, lacks some); training writes them all. The key tokens are the ones its tokenizer carries
as project key tokens; `trained_fact_ids` are the fact ids per relation of the stage that made
it (Phase 2: the seen facts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .versioned import Artifact, optional

META_FILE = "mtg_meta.json"


@dataclass
class CheckpointMeta(Artifact):
    SCHEMA = "mtg.meta"
    VERSION = 1

    key_tokens: dict[str, int] = field(default_factory=dict)
    key_token_init: Optional[str] = None
    key_token_format: Optional[str] = None
    add_bos_train: Optional[bool] = None
    combine_spacing: Optional[str] = None
    compose_joiner: Optional[str] = None
    chat_template: Optional[bool] = None
    phase: Optional[int] = None
    run_name: Optional[str] = None
    config_hash: Optional[str] = None
    base_model: Optional[str] = None
    dataset: Optional[str] = None
    relation_spec: Optional[str] = None
    relation_ids: Optional[list[str]] = None
    trained_fact_ids: dict[str, list[int]] = field(default_factory=dict)
    train_text_type: Optional[str] = None
    loss_mode: Optional[str] = None
    legacy_loss: Optional[bool] = None
    epoch: Optional[int] = None          # set per checkpoint
    step: Optional[int] = None
    # Every training stage from the base model to this one, oldest first: run_name, phase, dataset,
    # trained_fact_ids. Evaluation asks it which facts any stage trained (a Phase-2 checkpoint's own
    # `trained_fact_ids` are only the seen facts, not the ones Phase 1 memorized).
    lineage: Optional[list[dict]] = optional()
    # Fact ids per relation of util_public/catalogue/rehearsal trained beside the stage's own facts.
    rehearsal_fact_ids: Optional[dict[str, list[int]]] = optional()

    @classmethod
    def of(cls, model_dir: str | Path) -> CheckpointMeta | None:
        """The metadata of a checkpoint directory; None when it is not one of ours (no file)."""
        path = Path(model_dir) / META_FILE
        if not path.is_file():
            return None
        return cls.read(path, "restore it from the run, or retrain the checkpoint")

    def save(self, model_dir: str | Path) -> Path:
        return self.write(Path(model_dir) / META_FILE)

    def at(self, epoch: int, step: int) -> CheckpointMeta:
        """This run's metadata for its checkpoint of `epoch` at `step`."""
        return CheckpointMeta.from_json({**self.to_json(), "epoch": epoch, "step": step}, "checkpoint metadata")

    def seen_fact_ids(self, relation_id: str) -> set[int] | None:
        """The fact ids Phase 2 trained for `relation_id` (None: not a Phase-2 checkpoint or no record)."""
        if self.phase != 2 or str(relation_id) not in self.trained_fact_ids:
            return None
        return set(self.trained_fact_ids[str(relation_id)])

    def stage(self) -> dict:
        """This checkpoint's own stage, as one `lineage` entry."""
        return {"run_name": self.run_name, "phase": self.phase, "dataset": self.dataset,
                "trained_fact_ids": self.trained_fact_ids}

    def stages(self) -> list[dict]:
        """The lineage; a checkpoint written before lineages were recorded knows its own stage only."""
        return self.lineage or [self.stage()]

    def datasets(self) -> set[str]:
        """The datasets any stage of the lineage trained on."""
        return {s["dataset"] for s in self.stages() if s.get("dataset")}

    def trained_relations(self) -> set[tuple[str, str]]:
        """(relation id, dataset) of every relation some stage of the lineage trained."""
        return {(r, s["dataset"]) for s in self.stages() if s.get("dataset") for r in (s.get("trained_fact_ids") or {})}

    def trained_in(self, dataset: str, relation_id: str, phase: int | None = None) -> set[int]:
        """The fact ids of `relation_id` in `dataset` that some stage of the lineage (of `phase`, if
        given) trained."""
        return {i for s in self.stages() if s.get("dataset") == dataset and phase in (None, s.get("phase"))
                for i in (s.get("trained_fact_ids") or {}).get(str(relation_id), [])}

    @property
    def k(self) -> int | None:
        """Facts trained per relation (the paper's k for a Phase-2 checkpoint)."""
        return max((len(v) for v in self.trained_fact_ids.values()), default=None)

    def identity(self) -> dict:
        """What distinguishes this checkpoint in a config or result hash."""
        return {"run_name": self.run_name, "config_hash": self.config_hash, "step": self.step,
                "epoch": self.epoch, "phase": self.phase}
