"""The config hash that decides whether a run directory may be resumed (SPEC §5.9).

It covers every result-affecting input: the base model's identity (registry name, plus the base
run's hash and step for project checkpoints), data selection and text options, key tokens, loss,
the optimisation hyperparameters, the seed and the training examples themselves (token ids, labels
and texts). Paths, logging, speed switches whose effect stays within floating-point tolerance,
`resume`, `report_to` and `dry_run` are left out, so moving directories or turning on wandb never
blocks a resume. The data enters as the examples, not as the input files' hashes (those stay in the
manifest's `data_fingerprint`): a paraphrase added to a relation's prompt catalogue, a comment in
`relations.yaml` or new distractors in a fact file leave a run whose texts they do not touch
"already complete", while any change to a trained text, token or label is a different run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import runinfo
from ..artifacts import RunManifest
from .schema import TrainStageConfig

_TRAIN_KEYS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
               "adam_epsilon", "max_grad_norm", "per_device_train_batch_size", "gradient_accumulation_steps",
               "effective_batch_size", "precision", "epochs", "seed", "group_by_length")


def hashed_view(cfg: TrainStageConfig, base_identity: dict, examples_sha256: str, effective_batch: int,
                precision: str) -> dict:
    """The canonical dict that is hashed; stored in the manifest to explain a mismatch. `precision`
    is what `train.precision` resolved to on this machine: `auto` and `native` mean fp32 on one
    machine and bf16 on another, and a run resumed across them would mix the two."""
    data = dataclasses.asdict(cfg.data)
    data.pop("root")
    if not data["rehearsal"]:    # absent when unused: the hashes of runs made before it existed stand
        data.pop("rehearsal")
    return {
        "phase": cfg.phase,
        "base": base_identity,
        "data": data,
        "wiki": dataclasses.asdict(cfg.wiki),
        "loss": dataclasses.asdict(cfg.loss),
        "key_token": dataclasses.asdict(cfg.key_token),
        "train": {k: getattr(cfg.train, k) for k in _TRAIN_KEYS} | {"resolved_effective_batch": effective_batch,
                                                                  "resolved_precision": precision},
        "save": {"dtype": cfg.save.dtype},
        "training_examples": examples_sha256,
    }


@dataclass(frozen=True)
class StageHash:
    """A stage's config hash with the view it hashes, and what a stored run is compared against."""
    value: str
    view: dict
    legacy_view: dict      # the same stage as runs hashed it before `training_examples` replaced the files
    inputs: dict           # input file -> sha256 (the manifest's data fingerprint)

    def matches(self, stored: str | None) -> bool:
        """A run written before the examples entered the hash (the input files' combined hash stood
        in their place) is the same run while those files are unchanged."""
        return stored in (self.value, runinfo.config_hash(self.legacy_view))

    def differences(self, old: RunManifest) -> list[str]:
        """`key: old -> new` per differing key, and the input files whose content changed."""
        legacy = "data_fingerprint" in old.hashed_config
        changed = differences(old.hashed_config, self.legacy_view if legacy else self.view)
        before = (old.data_fingerprint or {}).get("files") or {}
        files = sorted(f for f in set(before) | set(self.inputs) if before.get(f) != self.inputs.get(f))
        if files and any(c.startswith(("training_examples:", "data_fingerprint:")) for c in changed):
            changed.append("input files changed since: " + ", ".join(files))
        return changed


def stage_hash(cfg: TrainStageConfig, base_identity: dict, examples_sha256: str, data_fingerprint: dict,
               legacy_fingerprint: str, effective_batch: int, precision: str) -> StageHash:
    """The stage's hash; `legacy_fingerprint` is the combined hash of the input files as the legacy
    hash listed them (`catalogue.unmerged`)."""
    view = hashed_view(cfg, base_identity, examples_sha256, effective_batch, precision)
    legacy = {k: v for k, v in view.items() if k != "training_examples"} | {"data_fingerprint": legacy_fingerprint}
    return StageHash(runinfo.config_hash(view), view, legacy, data_fingerprint["files"])


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differences(old: dict, new: dict) -> list[str]:
    """`key: old -> new` for every dotted key whose value differs."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]
