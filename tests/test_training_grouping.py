"""The fast training path keeps the recipe's semantics: length-grouped batches are reshuffled at
every epoch, and the trainer's stock loss path accepts the collator's index tensors."""
from __future__ import annotations

import torch
from conftest import tiny_model

from util_public.training import hfargs
from util_public.training.collator import PadCollator
from util_public.training.dataset import TrainDataset
from util_public.training.masking import IGNORE, Masked
from util_public.training.trainer import MtgTrainer


def _examples(n: int = 400, vocab: int = 300) -> list[dict]:
    gen = torch.Generator().manual_seed(5)
    out = []
    for i in range(n):
        ids = torch.randint(1, vocab, (4 + (i * 7) % 29,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * (len(ids) - 2) + ids[-2:]})
    return out


def _trainer(tmp_path, examples, lm_head_at_labels: bool, **extra) -> MtgTrainer:
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, use_cpu=True,
                             report_to="none", save_strategy="no", remove_unused_columns=False, seed=3,
                             **extra)
    dataset = TrainDataset([Masked(e["input_ids"], e["labels"]) for e in examples])
    return MtgTrainer(model=tiny_model(300), args=args, train_dataset=dataset,
                      data_collator=PadCollator(0, label_index=True), lm_head_at_labels=lm_head_at_labels)


def _epoch(loader, epoch: int) -> list[list[int]]:
    """The batches of one epoch as the Trainer's loop draws them (set_epoch, then iterate)."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    return [[int(m.sum()) for m in b["attention_mask"]] for b in loader]


def test_length_grouped_batches_are_reshuffled_every_epoch(tmp_path):
    examples = _examples()
    trainer = _trainer(tmp_path, examples, True, **hfargs.length_grouping())
    loader = trainer.get_train_dataloader()
    first, second = _epoch(loader, 0), _epoch(loader, 1)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    for batches in (first, second):
        assert sorted(n for b in batches for n in b) == lengths          # each epoch sees every example once
    # (the sampler sorts within mega-batches of len // (4 * batch) batches: 12 here)
    spread = sum(max(b) - min(b) for b in first) / len(first)
    random_spread = sum(max(b) - min(b) for b in _epoch(_trainer(tmp_path, examples, True).get_train_dataloader(), 0)) / len(first)
    assert spread < random_spread / 2                                   # batches are grouped by length
    assert first != second                                              # ... and the grouping is redrawn


def test_stock_loss_path_ignores_the_collator_index(tmp_path):
    examples = _examples(8)
    stock = _trainer(tmp_path, examples, False)
    batch = PadCollator(0, label_index=True)(examples)
    reference = stock.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss
    torch.testing.assert_close(stock.compute_loss(stock.model, dict(batch)), reference, atol=1e-6, rtol=0)
    fast = _trainer(tmp_path, examples, True)
    torch.testing.assert_close(fast.compute_loss(fast.model, dict(batch)), reference, atol=1e-5, rtol=0)
