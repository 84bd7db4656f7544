"""Causal-LM loss computed only where labels exist (a speed path; SPEC §5.7, docs/PERFORMANCE.md).

For `s-o`, `o` and `r` most positions carry no loss, yet the standard forward projects every
position onto the vocabulary (a [tokens x vocab] fp32 tensor). Here the LM head and the
cross-entropy run only at positions whose shifted label is not -100; the value equals the
standard token-mean loss within floating-point tolerance (a test checks it).

Two routes, one result:
- `at_labels`: the base model gives hidden states, the supervised positions are gathered per row
  and `get_output_embeddings()` is applied to them alone. Used for a plain single-process model.
- `at_label_columns`: the model's own forward with `logits_to_keep` = every position that is
  supervised in some row. Used under DDP, FSDP (also FSDP2, which shards in place) and DeepSpeed,
  because calling submodules around the root forward would skip gradient synchronisation or
  parameter gathering. For per-device batch 1 both routes compute exactly the supervised positions.

Which positions are supervised is a property of the labels alone, so the collator computes it on
the host (`supervised_index`) and both routes gather with index tensors: a boolean-mask gather or
`nonzero()` on the device would make the CPU wait for the GPU in the middle of every step.
"""
from __future__ import annotations

from ..lmhead import decoder
from .masking import IGNORE


def _reduce(logits, targets, num_items_in_batch):
    """Token-mean cross-entropy in fp32; over the whole accumulated batch when its label count is
    given (the Trainer's `num_items_in_batch`, as the models' own loss does)."""
    import torch.nn.functional as F

    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    if num_items_in_batch is None:
        return total / max(int(targets.numel()), 1)
    if hasattr(num_items_in_batch, "to"):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def compile_decoder(model) -> None:
    """`train.compile`: torch.compile the decoder in place, so every loss path uses it and saving
    keeps the parameter names; dynamic shapes because length-grouped batches change width every step."""
    decoder(model).compile(dynamic=True)


# Keys the collator adds (`PadCollator(label_index=True)`); no model forward receives them
# (`MtgTrainer.compute_loss` drops them on the stock path).
INDEX_KEYS = ("label_positions", "label_columns", "label_cells")


def supervised_index(labels) -> dict:
    """Index tensors of the supervised positions of a right-padded [batch, width] label tensor.

    - `label_positions`: flat indices into [batch * width] of the positions whose NEXT token is a
      label (the hidden states that predict one); their targets sit at `label_positions + 1`;
    - `label_columns`: the sorted columns (of the same positions) supervised in some row;
    - `label_cells`: flat indices into [batch * len(label_columns)] of the supervised cells.
    All three list positions in row-major order, the order of a boolean-mask gather.
    """
    import torch

    width = labels.shape[1]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    rows, cols = keep.nonzero(as_tuple=True)
    columns = torch.unique(cols)
    column_of = torch.full((width,), -1, dtype=torch.long, device=labels.device)
    column_of[columns] = torch.arange(len(columns), device=labels.device)
    return {"label_positions": rows * width + cols, "label_columns": columns,
            "label_cells": rows * len(columns) + column_of[cols]}


def _index(inputs: dict) -> dict:
    """The collator's index tensors, or the same computed here (callers without the collator)."""
    if all(k in inputs for k in INDEX_KEYS):
        return {k: inputs[k] for k in INDEX_KEYS}
    return supervised_index(inputs["labels"])


def _targets(inputs: dict, positions):
    return inputs["labels"].reshape(-1).index_select(0, positions + 1)


def at_labels(model, inputs: dict, num_items_in_batch=None):
    """Loss from hidden states gathered at the supervised positions of each row."""
    index = _index(inputs)
    out = decoder(model)(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                         use_cache=False)
    hidden = out[0]
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index["label_positions"])
    logits = model.get_output_embeddings()(hidden)            # [n_supervised, vocab]
    return _reduce(logits, _targets(inputs, index["label_positions"]), num_items_in_batch)


def at_label_columns(model, inputs: dict, num_items_in_batch=None):
    """Loss through the model's forward, projecting only columns supervised in some row."""
    index = _index(inputs)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                logits_to_keep=index["label_columns"], use_cache=False)
    logits = out.logits                                        # [batch, columns, vocab]
    logits = logits.reshape(-1, logits.shape[-1]).index_select(0, index["label_cells"])
    return _reduce(logits, _targets(inputs, index["label_positions"]), num_items_in_batch)
