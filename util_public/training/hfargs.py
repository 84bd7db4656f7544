"""`transformers.TrainingArguments` from the stage config (SPEC §5.7).

Saving is driven by our epoch callback (`save_strategy: no`), so the Trainer never writes a
checkpoint we did not ask for. Keyword names that changed across transformers versions
(`group_by_length` became `train_sampling_strategy`) are chosen by what the installed class has.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .. import modelio, numerics
from ..errors import UserError
from .schema import TrainStageConfig


def check_reporters(value) -> None:
    """`train.report_to` names integrations transformers knows, and their packages are installed."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    names = _report_to(value)
    if names == "none":
        return
    if "none" in names:        # `[none, wandb]`: "unknown integration 'none'; use none or ..." contradicted itself
        raise UserError("train.report_to", f"{names}: none cannot be combined with integrations",
                        "use none alone, or list only integrations")
    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise UserError("train.report_to", f"unknown integration {name!r}",
                            f"use none or one of {', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
        if name not in available:
            raise UserError("train.report_to", f"{name} is not installed in this environment",
                            f"pip install {name}, or train.report_to=none")


def use_bf16(precision: str) -> bool:
    """bf16 mixed precision (fp32 master weights) or fp32, by `train.precision` (`numerics`)."""
    return numerics.choose(precision, modelio.default_device(), "train.precision") == "bf16"


def training_arguments(cfg: TrainStageConfig, output_dir: Path, grad_accum: int, run_name: str):
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    bf16 = use_bf16(t.precision)
    # `train.precision` decides: the Trainer would otherwise take an accelerate config's
    # mixed_precision from the environment (ddp.yaml's bf16 turned an fp32 CPU stage into bf16).
    os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if bf16 else "no"
    kwargs = dict(
        output_dir=str(output_dir), run_name=run_name, num_train_epochs=t.epochs,
        per_device_train_batch_size=t.per_device_train_batch_size, gradient_accumulation_steps=grad_accum,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps,
        optim=t.optim, weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
        full_determinism=t.full_determinism, bf16=bf16, use_cpu=not torch.cuda.is_available(),
        logging_strategy="steps", logging_steps=t.logging_steps, save_strategy="no", save_only_model=False,
        report_to=_report_to(t.report_to), disable_tqdm=False, remove_unused_columns=False,
        dataloader_num_workers=t.dataloader_num_workers, ddp_timeout=t.ddp_timeout_s,
        ddp_find_unused_parameters=False,   # every parameter takes part in each forward
        # The stock filter logs a non-finite loss as the mean of the earlier ones: a run whose weights
        # had all become NaN logged 0.0000 and registered its checkpoint. `callbacks.FiniteLoss` stops it.
        logging_nan_inf_filter=False,
    )
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if t.gradient_checkpointing:   # renamed in transformers 5
        kwargs["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = True
    if t.group_by_length:
        kwargs.update(length_grouping())
    kwargs.update(async_transfers())
    unknown = set(kwargs) - fields
    if unknown:
        raise RuntimeError(f"the installed transformers lacks TrainingArguments {sorted(unknown)}")
    return TrainingArguments(**kwargs)


def length_grouping() -> dict:
    """TrainingArguments keywords for the Trainer's length-grouped sampler (it draws a fresh
    permutation from torch's RNG at each epoch, so grouping keeps the per-epoch reshuffle)."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def async_transfers() -> dict:
    """On a GPU: pinned batches copied without blocking, so the host queues the next step while
    the device still works (a pageable copy would wait for the GPU at every step)."""
    import torch

    return {"accelerator_config": {"non_blocking": True}, "dataloader_pin_memory": True} \
        if torch.cuda.is_available() else {}


def _report_to(value) -> list[str] | str:
    if value in (None, "", "none"):
        return "none"
    return list(value) if isinstance(value, (list, tuple)) else [str(value)]


def steps_per_epoch(n_examples: int, per_device: int, grad_accum: int, world_size: int) -> int:
    """Optimizer steps per epoch as the Trainer counts them (the last partial accumulation counts)."""
    per_rank = -(-n_examples // world_size)
    batches = -(-per_rank // per_device)
    return -(-batches // grad_accum)
