"""A thin `transformers.Trainer` subclass: the loss at label positions, and atomic checkpoints.

Everything else (AdamW, warmup + cosine schedule, accumulation, mixed precision, length-grouped
sampling, distributed launch, resume via `resume_from_checkpoint`) is the stock Trainer.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from transformers import Trainer

from . import loss as lossfn
from .rundir import STAGING


class MtgTrainer(Trainer):
    """`lm_head_at_labels`: compute masked-mode losses with the LM head only at label positions.
    `finalize_checkpoint(staged_dir, state)`: called on rank 0 once every rank has written the
    staged checkpoint; it completes the directory, renames it into place and registers it."""

    def __init__(self, *args, lm_head_at_labels: bool = False,
                 finalize_checkpoint: Callable[[Path, object], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lm_head_at_labels = lm_head_at_labels
        self.finalize_checkpoint = finalize_checkpoint

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.lm_head_at_labels or return_outputs:
            # The model's own forward takes no index tensors (a collator may have added them).
            inputs = {k: v for k, v in inputs.items() if k not in lossfn.INDEX_KEYS}
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None   # the Trainer then averages per micro-batch and scales for accumulation
        # FSDP2 shards the model in place (no wrapper object), so test the launch mode, not only identity.
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        if not sharded and self.accelerator.unwrap_model(model) is model and lossfn.head_is_plain(model):
            # Submodules are called directly, so the top-level forward's autocast must be re-entered.
            with self.accelerator.autocast():
                loss = lossfn.at_labels(model, inputs, num_items_in_batch)
        else:
            loss = lossfn.at_label_columns(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # Same convention as the stock compute_loss: gradients are averaged across ranks
            # while `num_items_in_batch` counts all ranks' tokens.
            loss = loss * self.accelerator.num_processes
        return loss

    def _get_output_dir(self, trial) -> str:
        # The stock `_save_checkpoint` writes into `{output_dir}/checkpoint-{step}`; redirecting it
        # to the staging folder makes the final name appear only when the checkpoint is complete.
        return os.path.join(super()._get_output_dir(trial), STAGING)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save and self.finalize_checkpoint is not None:
            staged = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            self.finalize_checkpoint(staged, self.state)
        self.accelerator.wait_for_everyone()
