"""Offline wiki-style paragraphs for the `Text` column (SPEC §4.5, `wiki.source: template`).

A paragraph has 3-5 sentences: an opening sentence that names the subject S, one sentence that
states the object O (never as its first word), and 1-3 neutral filler sentences, in an order drawn
from the per-fact stream (seed, "wiki", relation, fact_id). O must occur exactly once, as whole
words; fillers that happen to contain O are not used.
"""
from __future__ import annotations

import numpy as np

from ..facts import mentions
from ..seeding import stream

# Opening and object sentences per Wikidata property; {S} subject, {O} object, {Y} and {Z} years,
# {T} the subject type with its article {A}, {R} the relation name.
_PATTERNS = {
    "P36": ("{S} is a small country known for its terraced valleys and river trade.",
            ("Its capital and largest city is {O}.", "The government of {S} sits in {O}.")),
    "P50": ("{S} is a novel first published in {Y}.",
            ("It was written by {O}.", "The book's author is {O}.")),
    "P69": ("{S} is a researcher and essayist born in {Y}.",
            ("As a student, {S} attended {O}.", "{S} was educated at {O}.")),
    "P25": ("{S} is a painter and translator born in {Y}.",
            ("The mother of {S} is {O}.", "{S} was raised by their mother, {O}.")),
    "P136": ("{S} is a creative work released in {Y}.",
             ("Critics usually classify it as {O}.", "Its genre is {O}.")),
}
_GENERIC = ("{S} is {A} {T} first recorded in {Y}.",
            ("Its {R} is {O}.", "According to most sources, the {R} of {S} is {O}."))
# Fillers name S rather than saying "it", because subjects may be people or things.
_FILLERS = (
    "{S} is mentioned in several regional archives.",
    "Little is known about the early history of {S}.",
    "Older records sometimes spell the name {S} differently.",
    "A short entry on {S} appeared in a yearbook in {Z}.",
    "Local historians have written about {S} since {Z}.",
    "{S} drew wider attention only in recent decades.",
)

def _pick(rng: np.random.Generator, items: tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def paragraph(head: str, obj: str, relation: dict, seed: int, relation_id: str, fact_id: int) -> str | None:
    """The template paragraph for one fact, or None when O cannot occur exactly once in it
    (the subject itself contains O); the caller fails or skips per `wiki.on_missing_object`."""
    rng = stream(seed, "wiki", relation_id, fact_id)
    opening, object_sentences = _PATTERNS.get(relation.get("pid") or "", _GENERIC)
    fields = {"{S}": head, "{T}": relation.get("subject_type") or "entity",
              # An unverified relation (no pid, e.g. id 7) has no trustworthy name; its object type reads better.
              "{R}": (relation.get("name") if relation.get("pid") else relation.get("object_type")) or "relation"}
    year = 1700 + int(rng.integers(300))
    fields.update({"{A}": "an" if fields["{T}"][:1].lower() in "aeiou" else "a",
                   "{Y}": str(year), "{Z}": str(year + 1 + int(rng.integers(20)))})

    def fill(pattern: str, o: str = "") -> str:
        for key, value in {**fields, "{O}": o}.items():
            pattern = pattern.replace(key, value)
        return pattern

    first, statement = fill(opening), fill(_pick(rng, object_sentences), obj)
    usable = [f for f in (fill(f) for f in _FILLERS) if not mentions(f, obj)]
    body = [usable[int(i)] for i in rng.permutation(len(usable))[:int(rng.integers(1, 4))]]
    body.insert(int(rng.integers(len(body) + 1)), statement)
    text = " ".join([first, *body])
    return text if len(mentions(text, obj)) == 1 else None
