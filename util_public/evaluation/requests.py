"""What to score: (context token ids, continuation token ids) requests (SPEC §6.3 steps 1-3).

The context C and continuation X = separator + option are joined into F = C + X and F is
tokenised ONCE; the split is at character b = len(C) (`tokenspans.split_at_char`). Trailing
spaces of C move to the front of X, so a context never ends in a space token that the training
text never had; a trailing line break stays in C (a chat template's generation prompt ends with
one, and so does the context of the training text built with it). A token straddling b belongs to
the continuation and marks the request `boundary_merge` (its context ids then differ from its
siblings', so backends score it as a full row). BOS is prepended as ids per `prompt.add_bos`,
unless the context already starts with the BOS text (a chat template that writes it): one BOS,
as in training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

from .. import seeding, tokenspans
from ..errors import UserError
from ..facts import Fact, check_options


@dataclass(frozen=True)
class Request:
    key: Hashable                    # (fact_id, option_index) for MC; any caller-chosen id otherwise
    context: tuple[int, ...]         # ids before the continuation, BOS included
    continuation: tuple[int, ...]    # the scored ids
    n_chars: int                     # characters of the continuation string (separator included)
    boundary_merge: bool = False

    def __post_init__(self) -> None:
        if not self.context:    # a backend read the previous row's last position for its first token
            raise UserError(f"request {self.key!r}", "empty context: the first scored token needs a token before it",
                            "begin the context with BOS (requests.bos_prefix)")


def bos_prefix(tokenizer, mode: object, key: str = "prompt.add_bos") -> list[int]:
    """BOS ids to prepend: `auto` follows the tokenizer's own add_special_tokens behaviour
    (Llama adds BOS, Qwen does not); `true`/`false` force it."""
    text = str(mode).strip().lower()
    if text == "false":
        return []
    bos = tokenizer.bos_token_id
    if text == "true":
        if bos is None:
            raise UserError(key, f"tokenizer {tokenizer.name_or_path} has no BOS token",
                            f"use {key}=auto or false")
        return [bos]
    if text != "auto":
        raise UserError(key, f"{mode!r} is not auto, true or false")
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    adds_bos = bos is not None and len(with_special) > len(plain) and with_special[0] == bos
    return [bos] if adds_bos else []


def split(tokenizer, context: str, continuation: str, bos: list[int], key: Hashable = None) -> Request:
    """One request from strings: tokenise C + X once and split at the character boundary."""
    stripped = context.rstrip(" \t")
    continuation = context[len(stripped):] + continuation
    bos = _unless_written(tokenizer, context, bos)
    if not continuation:
        raise UserError(f"request {key}", "empty continuation")
    if not stripped and not bos:
        raise UserError(f"request {key}", "empty context and no BOS: the first token cannot be scored",
                        "use a prompt type with text before the answer, or prompt.add_bos=true")
    enc = tokenspans.encode(tokenizer, stripped + continuation)
    first, merged = tokenspans.split_at_char(enc, len(stripped))
    context_ids = tuple(bos) + tuple(enc.ids[:first])
    if not context_ids:
        raise UserError(f"request {key}", f"the continuation {continuation!r} swallows the whole context "
                        f"{stripped!r}", "set prompt.add_bos=true so the first token can be scored")
    return Request(key, context_ids, tuple(enc.ids[first:]), len(continuation), merged)


def prompt_ids(tokenizer, context: str, bos: list[int]) -> list[int]:
    """Generation input: BOS + the context's tokens (no separator: the model writes the space)."""
    if not context and not bos:
        raise UserError("prompt", "empty generation prompt")
    return list(_unless_written(tokenizer, context, bos)) + tokenspans.encode(tokenizer, context).ids


def _unless_written(tokenizer, context: str, bos: list[int]) -> list[int]:
    """`bos`, or nothing when the context's text already begins with the BOS token."""
    text = getattr(tokenizer, "bos_token", None)
    return [] if bos and text and context.startswith(text) else bos


def gold_index(fact: Fact, num_options: int, gold_position: str, seed: int) -> int:
    """Where the gold goes among `num_options`: last, random (per-fact stream) or index:N."""
    where = str(gold_position)
    if where == "last":
        return num_options - 1
    if where == "random":
        return int(seeding.stream(seed, "mc.gold_position", fact.relation_id, fact.fact_id).integers(num_options))
    if where.startswith("index:"):
        try:
            n = int(where.removeprefix("index:"))
        except ValueError:
            n = -1
        if 0 <= n < num_options:
            return n
        raise UserError("mc.gold_position", f"{where!r}: N must be an integer in 0..{num_options - 1}")
    raise UserError("mc.gold_position", f"{where!r} is not last, random or index:N")


def mc_options(fact: Fact, num_options: int, gold_position: str, seed: int) -> tuple[list[str], int]:
    """The option strings (gold + distractors) and the gold's index; validates the option set."""
    where = f"relation {fact.relation_id}: fact_id {fact.fact_id}"
    if len(fact.options) != num_options - 1:
        raise UserError(where, f"{len(fact.options)} distractors, mc.num_options={num_options} needs "
                        f"{num_options - 1}")
    if not fact.object.strip():
        raise UserError(where, "the gold object is empty")
    check_options(fact.object, fact.options, where)
    gold = gold_index(fact, num_options, gold_position, seed)
    options = list(fact.options)
    options.insert(gold, fact.object)
    return options, gold


def mc_requests(tokenizer, fact: Fact, context: str, options: list[str], separator: str,
                bos: list[int]) -> list[Request]:
    """One request per option of one fact, keyed (fact_id, option_index)."""
    return option_requests(tokenizer, fact.fact_id, context, options, separator, bos)


def option_requests(tokenizer, key: Hashable, context: str, options: Sequence[str], separator: str,
                    bos: list[int]) -> list[Request]:
    """One request per option of one question, keyed (key, option_index)."""
    return [split(tokenizer, context, separator + opt, bos, (key, i)) for i, opt in enumerate(options)]
