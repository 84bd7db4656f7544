"""Character spans <-> tokens, the one place offsets are interpreted.

Every mask (training) and every context/continuation split (evaluation) is derived from the
offset mapping of ONE tokenisation of the full string; strings are never tokenised in pieces.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError


@dataclass
class Encoded:
    ids: list[int]
    offsets: list[tuple[int, int]]    # (start, end) character offsets; (0, 0) for special tokens
    special: list[bool]               # True for tokens added by the tokenizer or registered as special


def require_fast(tokenizer, where: str = "tokenizer") -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{where}: {getattr(tokenizer, 'name_or_path', '?')}",
                        "a fast tokenizer (with offset mappings) is required")


def pad_id(tokenizer) -> int:
    """The id that pads a batch: the pad token, or EOS when there is none (as the original)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')}", "has neither a pad nor an EOS token")


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a pad token its EOS as pad token (in place; saved with checkpoints)."""
    if tokenizer.pad_token is None:
        pad_id(tokenizer)           # refuses a tokenizer without EOS
        tokenizer.pad_token = tokenizer.eos_token


def encode(tokenizer, text: str, add_special_tokens: bool = False) -> Encoded:
    """Tokenise `text` once, keeping offsets and which tokens are special."""
    require_fast(tokenizer)
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special_ids = set(tokenizer.all_special_ids)
    # The unknown token stands in for characters the vocabulary has no piece for ("São" without an
    # "ã" piece is S, <unk>, o): it belongs to the span it covers. Only where the text spells the
    # token itself is it special (SmolLM2's unknown token is <|endoftext|>).
    unk, unk_text = tokenizer.unk_token_id, tokenizer.unk_token
    special = [bool(m) or (i in special_ids and not (i == unk and text[a:b] != unk_text))
               for m, i, (a, b) in zip(enc["special_tokens_mask"], enc["input_ids"], offsets)]
    return Encoded(list(enc["input_ids"]), offsets, special)


def tokens_in_span(enc: Encoded, start: int, end: int, include_special: bool = False) -> list[int]:
    """Token positions whose offsets [a, b) overlap [start, end) (a < end and b > start).

    A token that straddles an edge is included. Special tokens (e.g. key tokens, BOS) belong to
    no subject/object span unless `include_special`.
    """
    return [i for i, (a, b) in enumerate(enc.offsets)
            if a < end and b > start and b > a and (include_special or not enc.special[i])]


def split_at_char(enc: Encoded, boundary: int) -> tuple[int, bool]:
    """First continuation token for a context/continuation boundary at character `boundary`.

    Continuation tokens are those whose end offset is > boundary; a token starting before the
    boundary but ending after it (a merge across the boundary) makes the second value True.
    Tokens with empty offsets (BOS) stay in the context.
    """
    for i, (a, b) in enumerate(enc.offsets):
        if b > boundary and b > a:
            return i, a < boundary
    return len(enc.ids), False
