"""A thin `transformers.Trainer` subclass: the loss at label positions, and atomic checkpoints.

Everything else (AdamW, warmup + cosine schedule, accumulation, mixed precision, length-grouped
sampling, distributed launch, resume via `resume_from_checkpoint`) is the stock Trainer.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable

from transformers import Trainer

from ..atomicio import disk_failure, is_disk_failure
from ..lmhead import head_is_plain
from . import loss as lossfn
from .rundir import MASTER_WEIGHTS, STAGING

log = logging.getLogger("mtg.training")


class MtgTrainer(Trainer):
    """`lm_head_at_labels`: compute masked-mode losses with the LM head only at label positions.
    `finalize_checkpoint(staged_dir, state)`: called on rank 0 once every rank has written the
    staged checkpoint; it completes the directory, renames it into place and registers it.
    `final_state=False` (`save.full_state: none`): the checkpoint of the last step holds the model
    only, no optimizer/scheduler/RNG state. `save_bf16` (`save.dtype: bf16`): weights are written
    in bf16 (the fp32 master weights stay in memory, and a checkpoint that keeps resume state keeps
    them too, in `MASTER_WEIGHTS`, so that a resume continues from exactly the weights it stopped at)."""

    def __init__(self, *args, lm_head_at_labels: bool = False,
                 finalize_checkpoint: Callable[[Path, object], None] | None = None,
                 final_state: bool = True, save_bf16: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.lm_head_at_labels = lm_head_at_labels
        self.finalize_checkpoint = finalize_checkpoint
        self.final_state = final_state
        self.save_bf16 = save_bf16

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.lm_head_at_labels or return_outputs:
            # The model's own forward takes no index tensors (a collator may have added them).
            inputs = {k: v for k, v in inputs.items() if k not in lossfn.INDEX_KEYS}
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        if not self.model_accepts_loss_kwargs:
            num_items_in_batch = None   # the Trainer then averages per micro-batch and scales for accumulation
        # FSDP2 shards the model in place (no wrapper object), so test the launch mode, not only identity.
        sharded = self._shards_state()
        if not sharded and self.accelerator.unwrap_model(model) is model and head_is_plain(model):
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
        # A run that keeps no resume state deletes it once complete, so at the last step writing it
        # (the AdamW moments: 8 bytes per parameter, 4 GB for a 0.5B model) is pure cost.
        model_only = not self.final_state and self.state.global_step >= self.state.max_steps
        saved, self.args.save_only_model = self.args.save_only_model, self.args.save_only_model or model_only
        staged = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        try:
            with _disk_failure_names(staged):
                super()._save_checkpoint(model, trial)
        finally:
            self.args.save_only_model = saved
        self.accelerator.wait_for_everyone()
        if self.args.should_save and self.finalize_checkpoint is not None:
            with _disk_failure_names(staged):      # its dtype pass and fsync write to the disk too
                self.finalize_checkpoint(staged, self.state)
        self.accelerator.wait_for_everyone()

    def _save(self, output_dir=None, state_dict=None) -> None:
        # Casting before the write, not after it, spares writing the fp32 file (2 GB for a 0.5B
        # model) only to rewrite it: most of a short CPU stage's saving time.
        if self.save_bf16 and self.args.should_save:
            state_dict = bf16_copies(self.model.state_dict() if state_dict is None else state_dict)
        super()._save(output_dir, state_dict)

    def _save_optimizer_and_scheduler(self, output_dir) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        # FSDP and DeepSpeed keep full-precision weights in their own resume state already.
        if self.save_bf16 and self.args.should_save and not self._shards_state():
            from safetensors.torch import save_model

            master = Path(output_dir) / MASTER_WEIGHTS
            master.parent.mkdir(exist_ok=True)
            save_model(self.accelerator.unwrap_model(self.model), str(master), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        master = Path(resume_from_checkpoint) / MASTER_WEIGHTS
        if model is None and master.is_file():
            from safetensors.torch import load_model

            load_model(self.model, str(master), device="cpu")
            return
        if self.save_bf16 and not self._shards_state():
            log.warning("%s holds bf16 weights only (saved before checkpoints kept their fp32 master weights): "
                        "the resumed run continues from rounded weights and will not equal an uninterrupted one",
                        resume_from_checkpoint)
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _shards_state(self) -> bool:
        return self.is_fsdp_enabled or self.is_deepspeed_enabled


def bf16_copies(state_dict: dict) -> dict:
    """The floating-point tensors in bf16. Tensors sharing storage (tied input and output
    embeddings) stay one tensor, so `save_pretrained` still writes them once."""
    import torch

    copies: dict = {}
    out = {}
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point():
            out[name] = tensor
            continue
        view = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
        if view not in copies:
            copies[view] = tensor.detach().to(torch.bfloat16)
        out[name] = copies[view]
    return out


@contextlib.contextmanager
def _disk_failure_names(staged: Path):
    """A full or read-only disk while writing checkpoint `staged` becomes one message naming it.
    Each writer reports it in its own type: OSError, torch.save's RuntimeError, and safetensors'
    SafetensorError, a bare Exception (caught too narrowly, it reached the user as a traceback)."""
    try:
        yield
    except Exception as err:
        if not is_disk_failure(err):
            raise
        raise disk_failure(staged, err, "the checkpoint",
                           "free disk space or save less (save.every_epoch=false, save.dtype=bf16); "
                           "rerunning resumes from the last complete checkpoint") from err
