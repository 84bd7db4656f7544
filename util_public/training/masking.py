"""Loss-mode labels from character spans (SPEC §5.4, §5.5).

The text is tokenised once (fast tokenizer, offsets); a token carries loss when its offset
interval overlaps a selected character span. Modes:

- `normal`: every token;
- `s-o`: the first occurrence of each recorded fact's S and the first of its O;
- `o`: every occurrence of each recorded fact's O (SFT on the object);
- `r`: the exact complement of `s-o` (so `s-o` and `r` partition the sequence).

With `loss.occurrence: original` occurrences are searched in the final string (the original's
semantics); with `primary` only the substituted S and appended O count. `legacy` validates the
declared mode exactly as a normal run, then labels every token, which is what the original's
collator actually trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .. import tokenspans
from ..errors import UserError
from . import occurrences
from .texts import FactSpans, Span, TrainText

IGNORE = -100
MODES = ("normal", "s-o", "o", "r")          # loss.mode (the schema's choices)
OCCURRENCES = ("original", "primary")        # loss.occurrence


@dataclass
class Masked:
    input_ids: list[int]
    labels: list[int]
    subject_only_at_start: int = 0      # facts whose S tokens all sit at position 0 (never predicted)

    @property
    def n_label_tokens(self) -> int:
        """Label tokens that are actually predicted (position 0 has no preceding token)."""
        return sum(1 for lab in self.labels[1:] if lab != IGNORE)


def mask(tokenizer, text: TrainText, mode: str, occurrence: str = "original", legacy: bool = False,
         add_special_tokens: bool = False, specials: Iterable[str] = ()) -> Masked:
    """Token ids and labels of one training text; errors name the fact, span, text and tokenizer."""
    enc = tokenspans.encode(tokenizer, text.text, add_special_tokens=add_special_tokens)
    if mode not in MODES:
        raise UserError("loss.mode", f"{mode!r} is not one of {', '.join(MODES)}")
    if mode == "normal":
        chosen, at_start = set(range(len(enc.ids))), 0
    else:
        picked, at_start = _subject_object_tokens(tokenizer, enc, text, mode, occurrence, tuple(specials))
        chosen = set(range(len(enc.ids))) - picked if mode == "r" else picked
    labels = list(enc.ids) if legacy else [t if i in chosen else IGNORE for i, t in enumerate(enc.ids)]
    masked = Masked(list(enc.ids), labels, at_start)
    if masked.n_label_tokens == 0:
        raise UserError(_where(text, tokenizer), f"no label tokens after position 0 under loss.mode={mode} "
                        f"(the causal shift never predicts position 0); text {text.text!r}")
    return masked


def _subject_object_tokens(tokenizer, enc, text: TrainText, mode: str, occurrence: str,
                           specials: tuple[str, ...]) -> tuple[set[int], int]:
    """Token positions of the S/O occurrences the mode selects, and the S-at-position-0 count."""
    picked: set[int] = set()
    at_start = 0
    for fact in text.facts:
        objects = _occurrences(text.text, fact, "object", occurrence, specials)
        _require(objects, tokenizer, text, fact, "object")
        objects = objects if mode == "o" else objects[:1]
        subjects = _occurrences(text.text, fact, "subject", occurrence, specials)
        _check_apart(objects, subjects[:1], mode, tokenizer, text, fact)
        for span in objects:
            picked |= _tokens(enc, span, tokenizer, text, fact, "object")
        if mode == "o":
            continue
        _require(subjects, tokenizer, text, fact, "subject")
        tokens = _tokens(enc, subjects[0], tokenizer, text, fact, "subject")
        at_start += tokens == {0}
        picked |= tokens
    return picked, at_start


def _occurrences(full: str, fact: FactSpans, kind: str, occurrence: str, specials: tuple[str, ...]) -> list[Span]:
    span = fact.subject if kind == "subject" else fact.object
    if occurrence == "primary":
        return [span] if span else []
    needle = fact.subject_text if kind == "subject" else full[span[0]:span[1]]
    return occurrences.find(full, needle, specials)


def _check_apart(objects: list[Span], subject: list[Span], mode: str, tokenizer, text: TrainText,
                 fact: FactSpans) -> None:
    """Search (`original`) can pick an O occurrence that is not this fact's answer: one inside the S
    occurrence the loss takes (a Head equal to its object, "Singapore" -> "Singapore", or containing
    it), which trains the subject's tokens as the answer, or, for `s-o` and `r`, one before it (an
    ic-lke shot "Brania : ottawa" before "Veloria : ottawa."), which leaves this fact's answer out.
    `primary` takes the appended O itself, so it is always after S."""
    for o_start, o_end in objects:
        for s_start, s_end in subject:
            inside = o_start < s_end and s_start < o_end
            if inside or (mode != "o" and o_start < s_start):
                found = (f"inside the subject {fact.subject_text!r}, so the subject's tokens would be trained as "
                         "the answer" if inside else
                         f"before the subject {fact.subject_text!r} (at character {o_start}), so loss.mode={mode} "
                         "would train that occurrence instead of this fact's answer")
                raise UserError(_where(text, tokenizer, fact),
                                f"the object {text.text[o_start:o_end]!r} is found {found}, in {text.text!r}",
                                "set loss.occurrence=primary (the appended object's own span)")


def _require(found: list[Span], tokenizer, text: TrainText, fact: FactSpans, kind: str) -> None:
    if not found:
        value = fact.subject_text if kind == "subject" else text.text[fact.object[0]:fact.object[1]]
        raise UserError(_where(text, tokenizer, fact),
                        f"the {kind} {value!r} does not occur in the text {text.text!r}")


def _tokens(enc, span: Span, tokenizer, text: TrainText, fact: FactSpans, kind: str) -> set[int]:
    tokens = set(tokenspans.tokens_in_span(enc, *span))
    if not tokens:
        raise UserError(_where(text, tokenizer, fact),
                        f"the {kind} span {text.text[span[0]:span[1]]!r} maps to no tokens in {text.text!r}")
    return tokens


def _where(text: TrainText, tokenizer, fact: FactSpans | None = None) -> str:
    fact_id = fact.fact_id if fact else text.fact_id
    relation = fact.relation_id if fact else text.relation_id
    return (f"fact_id {fact_id} (relation {relation}, {text.prompt_id}, "
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')})")
