"""Causal-LM loss computed only where labels exist (a speed path; SPEC §5.7, PERF.md).

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
"""
from __future__ import annotations

import inspect

from .masking import IGNORE

# Post-processing some architectures apply to logits after the LM head; calling the head
# directly would skip it, so those models take the forward route.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def head_is_plain(model) -> bool:
    """True when logits are exactly `get_output_embeddings()(last hidden state)`."""
    config = getattr(model, "config", None)
    return model.get_output_embeddings() is not None and not any(
        getattr(config, name, None) not in (None, 0, 1, 1.0) for name in _LOGIT_POSTPROCESSING)


def accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


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


def _decoder(model):
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return decoder if decoder is not None and decoder is not model else model.base_model


def at_labels(model, inputs: dict, num_items_in_batch=None):
    """Loss from hidden states gathered at the supervised positions of each row."""
    labels = inputs["labels"][:, 1:]
    keep = labels != IGNORE
    out = _decoder(model)(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                          use_cache=False)
    hidden = out[0][:, :-1][keep]                       # [n_supervised, hidden]
    logits = model.get_output_embeddings()(hidden)
    return _reduce(logits, labels[keep], num_items_in_batch)


def at_label_columns(model, inputs: dict, num_items_in_batch=None):
    """Loss through the model's forward, projecting only columns supervised in some row."""
    labels = inputs["labels"][:, 1:]
    keep = labels != IGNORE
    columns = keep.any(dim=0).nonzero().squeeze(1)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                logits_to_keep=columns, use_cache=False)
    logits = out.logits                                  # [batch, columns, vocab]
    chosen = keep[:, columns]
    return _reduce(logits[chosen], labels[:, columns][chosen], num_items_in_batch)
