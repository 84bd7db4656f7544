"""Tree rows: one row per question holding its context once and, after it, every continuation's
tokens but the last; each continuation attends to the context and to its own earlier tokens only.

One forward then scores all of a question's options with no KV-cache copies: continuation k's
token j sits at position len(context) + j (as in its own full row), and a 4D attention mask hides
the other continuations from it. The next-token distribution is read at the last context token
(every option's first token) and at each fed continuation token (the token after it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

CONTEXT, PAD = -1, -2      # owner of context tokens and of padding; continuations own 0, 1, ...


@dataclass
class Layout:
    width: int
    ids: list[list[int]] = field(default_factory=list)          # [rows][width], right-padded
    positions: list[list[int]] = field(default_factory=list)    # position ids (what a full row would see)
    owner: list[list[int]] = field(default_factory=list)        # CONTEXT, PAD or the continuation's index
    scored: list[int] = field(default_factory=list)             # flat row * width + column, read the next token there
    pair_position: list[int] = field(default_factory=list)      # per scored token: index into `scored` (non-decreasing)
    pair_target: list[int] = field(default_factory=list)        # per scored token: its id
    head_pair: list[int] = field(default_factory=list)          # per continuation (row-major): its first token's pair
    tail_pair: list[int] = field(default_factory=list)          # ... and where its tokens 2..n's pairs start
    extra_tokens: list[int] = field(default_factory=list)       # ... and n - 1, the number of those pairs


def row_length(context: Sequence[int], continuations: Sequence[Sequence[int]]) -> int:
    return len(context) + sum(len(c) - 1 for c in continuations)


def build(contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]], pad_id: int) -> Layout:
    """The tree rows of questions (context, its continuations). Pairs are ordered by position
    (all first tokens of a question, then each continuation's tokens 2..n, consecutive)."""
    layout = Layout(width=max(row_length(c, conts) for c, conts in zip(contexts, continuations)))
    for row, (context, conts) in enumerate(zip(contexts, continuations)):
        base = row * layout.width
        ids, positions, owner = list(context), list(range(len(context))), [CONTEXT] * len(context)
        head = len(layout.scored)
        layout.scored.append(base + len(context) - 1)
        first = len(layout.pair_target)     # every first token reads the last context position
        layout.head_pair.extend(range(first, first + len(conts)))
        layout.pair_position.extend([head] * len(conts))
        layout.pair_target.extend(cont[0] for cont in conts)
        for k, cont in enumerate(conts):
            layout.tail_pair.append(len(layout.pair_target))
            layout.extra_tokens.append(len(cont) - 1)
            if len(cont) == 1:          # most options: nothing fed, nothing more to read
                continue
            for j in range(len(cont) - 1):
                layout.pair_position.append(len(layout.scored))
                layout.pair_target.append(cont[j + 1])
                layout.scored.append(base + len(ids))
                ids.append(cont[j])
                positions.append(len(context) + j)
                owner.append(k)
        fill = layout.width - len(ids)
        layout.ids.append(ids + [pad_id] * fill)
        layout.positions.append(positions + [0] * fill)
        layout.owner.append(owner + [PAD] * fill)
    return layout


def attention_bias(owner, dtype):
    """Additive [rows, 1, width, width] mask: 0 where query a may see key b, else the dtype's
    minimum. a sees b when b <= a and b is context or shares a's owner; padding sees context and
    padding (never an empty row, so no NaN), and nothing real sees padding."""
    import torch

    width = owner.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool, device=owner.device).tril()
    same = (owner[:, None, :] == CONTEXT) | (owner[:, None, :] == owner[:, :, None])
    allowed = causal & same
    bias = torch.zeros(allowed.shape, dtype=dtype, device=owner.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
