"""The config hash that decides whether a run directory may be resumed (SPEC §5.9).

It covers every result-affecting input: the base model's identity (registry name, plus the base
run's hash and step for project checkpoints), data selection and text options, key tokens, loss,
the optimisation hyperparameters, the seed and the data fingerprint. Paths, logging, speed
switches whose effect stays within floating-point tolerance, `resume`, `report_to` and `dry_run`
are left out, so moving directories or turning on wandb never blocks a resume.
"""
from __future__ import annotations

import dataclasses

from .schema import TrainStageConfig

_TRAIN_KEYS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
               "adam_epsilon", "max_grad_norm", "per_device_train_batch_size", "gradient_accumulation_steps",
               "effective_batch_size", "precision", "epochs", "seed", "group_by_length")


def hashed_view(cfg: TrainStageConfig, base_identity: dict, data_fingerprint: str, effective_batch: int,
                precision: str) -> dict:
    """The canonical dict that is hashed; stored in the manifest to explain a mismatch. `precision`
    is what `train.precision` resolved to on this machine: `auto` and `native` mean fp32 on one
    machine and bf16 on another, and a run resumed across them would mix the two."""
    data = dataclasses.asdict(cfg.data)
    data.pop("root")
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
        "data_fingerprint": data_fingerprint,
    }


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
