"""Trainer callbacks: a diverged run stopped, metrics.jsonl, per-epoch saving/stopping, and a quiet
progress bar."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from transformers import ProgressCallback, TrainerCallback

from .. import atomicio
from ..errors import UserError

log = logging.getLogger("mtg.training")


class FiniteLoss(TrainerCallback):
    """Stop at the first logged loss or gradient norm that is not a finite number. The Trainer logs
    before it saves, and every epoch's last step is logged (`MetricsLog`), so no checkpoint is saved
    after a non-finite gradient has been applied; every rank sees the same, gathered values. The
    loss of step N comes from the weights after step N-1: a checkpoint of that step holds them."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for name in ("loss", "grad_norm"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                step = state.global_step
                raise UserError("train", f"the {name.replace('_', ' ')} is {float(value)} at step {step}: training "
                                f"diverged; nothing of this step is saved (a checkpoint of step {step - 1}, if one "
                                "was saved, holds the weights that gave it)",
                                "lower train.learning_rate, or keep train.max_grad_norm clipping on")


class MetricsLog(TrainerCallback):
    """Appends one JSON line per logging step and one per epoch (mean loss, tokens, throughput) to
    metrics.jsonl.

    The epoch mean weights each logged loss by the optimizer steps it covers. The Trainer logs every
    `train.logging_steps` steps; an epoch's last step is logged too, so that no logged loss spans two
    epochs and the epoch mean is the exact mean of its step losses for any `logging_steps` (the
    Trainer alone left an epoch's last steps in the next epoch's first log). An epoch's seconds run
    from its first batch to its last optimizer step: the checkpoint saved after it is not counted
    (it belongs to the disk, not to training), so tokens/s is comparable with the benchmarks'.
    """

    def __init__(self, path: Path, tokens_per_epoch: int, label_tokens_per_epoch: int):
        self.path = path
        self.tokens = tokens_per_epoch
        self.label_tokens = label_tokens_per_epoch
        self._sum = 0.0
        self._steps = 0
        self._last_step = 0
        self._epoch_started = time.perf_counter()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_started = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        # The Trainer sets the epoch to a whole number after an epoch's last optimizer step, before
        # it decides whether to log and before on_epoch_end reads the sums.
        if float(state.epoch or 0).is_integer():
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        covered = max(state.global_step - self._last_step, 1)
        self._last_step = state.global_step
        self._sum += float(logs["loss"]) * covered
        self._steps += covered
        record = {"type": "step", "step": state.global_step, "epoch": round(float(state.epoch or 0), 4),
                  "loss": float(logs["loss"]), "learning_rate": logs.get("learning_rate"),
                  "grad_norm": logs.get("grad_norm")}
        atomicio.append_jsonl(self.path, record)

    def on_epoch_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        epoch = round(float(state.epoch or 0))
        mean = self._sum / self._steps if self._steps else None
        if torch.cuda.is_available():   # queued kernels belong to this epoch, not the next
            torch.cuda.synchronize()
        seconds = max(time.perf_counter() - self._epoch_started, 1e-9)
        atomicio.append_jsonl(self.path, {"type": "epoch", "epoch": epoch, "step": state.global_step,
                                          "mean_loss": mean, "tokens": self.tokens,
                                          "label_tokens": self.label_tokens, "seconds": round(seconds, 6),
                                          "tokens_per_s": round(self.tokens / seconds, 1)})
        log.info("epoch %d (step %d): mean loss %s, %.0f tokens/s", epoch, state.global_step,
                 "n/a" if mean is None else f"{mean:.4f}", self.tokens / seconds)
        self._sum, self._steps = 0.0, 0


class EpochCheckpoints(TrainerCallback):
    """Saves at the end of every epoch (or only the last), and ends the invocation after
    `stop_after_epochs` epochs counted from where it started (the run stays resumable)."""

    def __init__(self, every_epoch: bool, epochs: int, stop_after_epochs: int | None):
        self.every_epoch = every_epoch
        self.epochs = epochs
        self.stop_after_epochs = stop_after_epochs
        self.first_epoch: int | None = None
        self.stopped_early = False

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.first_epoch is None:
            self.first_epoch = round(float(state.epoch or 0))

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = round(float(state.epoch or 0))
        done_here = epoch - (self.first_epoch or 0)
        stop = self.stop_after_epochs is not None and done_here >= self.stop_after_epochs and epoch < self.epochs
        control.should_save = self.every_epoch or epoch >= self.epochs or stop
        if stop:
            control.should_training_stop = True
            self.stopped_early = True
        return control


class QuietProgress(ProgressCallback):
    """tqdm progress with the latest loss as a postfix instead of one printed dict per log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{float(logs['loss']):.4f}", epoch=f"{float(state.epoch or 0):.2f}")
