"""Mask preview (`train.preview_masks=N`): each token of an example with its loss flag.

`L` marks a token that carries loss (its label is its id); position 0 is shown as `L*` when
labelled, because the causal shift never predicts it.
"""
from __future__ import annotations

from .masking import IGNORE, Masked
from .texts import TrainText


def render(tokenizer, text: TrainText, masked: Masked, index: int) -> str:
    lines = [f"example {index}: fact_id {text.fact_id}, relation {text.relation_id}, {text.prompt_id}: "
             f"{text.text!r} ({len(masked.input_ids)} tokens, {masked.n_label_tokens} with loss)"]
    for pos, (tok, label) in enumerate(zip(masked.input_ids, masked.labels)):
        flag = "  " if label == IGNORE else ("L*" if pos == 0 else "L ")
        lines.append(f"  {pos:4d} {flag} {tok:7d} {tokenizer.decode([tok])!r}")
    return "\n".join(lines)

