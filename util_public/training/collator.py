"""Batches of precomputed examples: right padding, labels kept as given (SPEC §5.4).

The original's collator rebuilt labels from `input_ids`, silently discarding every loss mask
(SPEC §8.1); this one only pads: input ids with the pad id, attention mask with 0 and labels
with -100. With `label_index`, it also adds the host-computed index tensors of the supervised
positions (`loss.supervised_index`), so the LM-head-at-labels loss never syncs to find them.
"""
from __future__ import annotations

from dataclasses import dataclass

from .loss import supervised_index
from .masking import IGNORE


@dataclass
class PadCollator:
    pad_token_id: int
    label_index: bool = False

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, attention, labels = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * (width - n))
            attention.append([1] * n + [0] * (width - n))
            labels.append(list(f["labels"]) + [IGNORE] * (width - n))
        batch = {"input_ids": torch.tensor(ids, dtype=torch.long),
                 "attention_mask": torch.tensor(attention, dtype=torch.long),
                 "labels": torch.tensor(labels, dtype=torch.long)}
        if self.label_index:
            batch.update(supervised_index(batch["labels"]))
        return batch
