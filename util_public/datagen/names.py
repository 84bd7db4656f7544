"""Offline fictional names (SPEC §4.2): pronounceable roots from a fixed syllable inventory,
shaped per subject kind, filtered by the subject rules.

Every name contains at least one invented root, so it cannot be a real title or person by
construction, only by a (rare) accident of the syllables. All draws come from one numpy stream,
so the same seed gives the same names on every platform.

Kinds: country, city, person, woman, book, work, organization, entity.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, Iterable

import numpy as np

from ..errors import UserError
from ..facts import norm

KINDS = ("country", "city", "person", "woman", "book", "work", "organization", "entity")

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "qu",
           "r", "s", "st", "t", "th", "tr", "v", "vr", "z")
_SIMPLE_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")   # after a coda
_NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "m")
_VOWELS = "aeiouy"

_COUNTRY_ENDS = ("ia", "ania", "land", "mark", "ovia", "esh", "mora", "heim", "garde", "istan", "onia")
_CITY_ENDS = ("ford", "holm", "burg", "wick", "port", "mouth", "haven", "stead", "gate", "mere", "by", "ton")
_GIVEN_ENDS = ("o", "el", "in", "ius", "ric", "an", "as", "en", "ard", "or")
_WOMAN_ENDS = ("a", "ine", "elle", "ette", "ia", "ora", "wen", "is", "ra")
_FAMILY_ENDS = ("son", "berg", "ley", "ski", "vic", "ard", "mann", "ton", "ez", "well", "more", "quist")
_ORG_NOUNS = ("Institute", "Dynamics", "Collective", "Foundation", "Consortium", "Guild", "Society",
              "Works", "Syndicate", "Company", "Trust", "Assembly")
_ENTITY_ENDS = ("", "", "heim", "tron", "vane", "quay", "wold", "spire", "rik", "mar")
_NOUNS = ("Orchard", "Lantern", "Ledger", "Meridian", "Harbor", "Tide", "Engine", "Crown", "Garden",
          "Mirror", "Archive", "Bell", "Threshold", "Winter", "Tribunal", "River", "Tower", "Letter",
          "Feather", "Voyage", "Promise", "Shadow", "Ember", "Orchid")
_ADJECTIVES = ("Glass", "Quiet", "Hollow", "Silver", "Crimson", "Last", "Forgotten", "Drowned", "Gilded",
               "Burning", "Salt", "Iron", "Paper", "Patient", "Velvet", "Northern")
_WORK_NOUNS = ("Nocturne", "Sessions", "Requiem", "Chronicles", "Saga", "Overture", "Elegy", "Variations",
               "Tapes", "Protocol")

_PUNCTUATION = " '-."   # SPEC §4.2: besides letters and digits, only these
MIN_LEN, MAX_LEN = 3, 40


def _pick(rng: np.random.Generator, items: tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def root(rng: np.random.Generator, syllables: tuple[int, int] = (2, 3)) -> str:
    """One invented, capitalised word of `syllables` (inclusive range) syllables.

    Syllables are onset + nucleus (+ coda inside the word); after a coda only a single-consonant
    onset may follow, and an onset never ends in the nucleus' first letter ("quu"), which keeps
    the words pronounceable. The last syllable is open, so suffixes attach cleanly.
    """
    count = int(rng.integers(syllables[0], syllables[1] + 1))
    word, coda = "", ""
    for i in range(count):
        onset = _pick(rng, _SIMPLE_ONSETS if coda else _ONSETS)
        nucleus = _pick(rng, _NUCLEI)
        if onset[-1] == nucleus[0]:
            nucleus = "a" if nucleus[0] != "a" else "o"
        coda = _pick(rng, _CODAS) if i < count - 1 else ""
        word += onset + nucleus + coda
    return word.capitalize()


def attach(stem: str, ending: str) -> str:
    """`stem` + `ending` without a vowel clash: the stem's final vowels give way to a
    vowel-initial ending, or the ending's first vowel gives way when the stem is too short."""
    if ending[:1] and ending[0] in _VOWELS and stem[-1] in _VOWELS:
        trimmed = stem.rstrip(_VOWELS)
        return trimmed + ending if len(trimmed) >= 2 else stem + ending[1:]
    return stem + ending


def _given(rng: np.random.Generator, ends: tuple[str, ...]) -> str:
    return attach(root(rng, (1, 2)), _pick(rng, ends))


def _title(rng: np.random.Generator, pattern: int) -> str:
    place, person = root(rng), _given(rng, _GIVEN_ENDS)
    noun, adj = _pick(rng, _NOUNS), _pick(rng, _ADJECTIVES)
    return (f"The {adj} {noun} of {place}", f"The {noun} of {place}", f"{person}'s {noun}",
            f"{adj} {noun}s of {place}", f"A {noun} for {person}", f"Beyond {place}")[pattern]


def _work(rng: np.random.Generator, pattern: int) -> str:
    place, person = root(rng), _given(rng, _GIVEN_ENDS)
    return (f"{place} {_pick(rng, _WORK_NOUNS)}", f"Echoes of {place}", f"The {place} Sessions",
            f"Midnight in {place}", f"Requiem for {person}", f"The {_pick(rng, _ADJECTIVES)} {place} Tapes")[pattern]


def candidate(kind: str, rng: np.random.Generator) -> str:
    """One raw candidate name of `kind` (not yet filtered)."""
    if kind in ("country", "city"):
        ends = _COUNTRY_ENDS if kind == "country" else _CITY_ENDS
        name = ""
        while len(name) < 6:        # short ones ("Fea") read as words rather than places
            name = attach(root(rng, (1, 2)), _pick(rng, ends))
        return name
    if kind in ("person", "woman"):
        given = _given(rng, _WOMAN_ENDS if kind == "woman" or rng.random() < 0.5 else _GIVEN_ENDS)
        return f"{given} {attach(root(rng, (1, 2)), _pick(rng, _FAMILY_ENDS))}"
    if kind == "book":
        return _title(rng, int(rng.integers(6)))
    if kind == "work":
        return _work(rng, int(rng.integers(6)))
    if kind == "organization":
        return f"{root(rng)} {_pick(rng, _ORG_NOUNS)}"
    if kind == "entity":
        return attach(root(rng, (2, 3)), _pick(rng, _ENTITY_ENDS))
    raise UserError("subject_kind", f"unknown kind {kind!r}", f"known kinds: {list(KINDS)}")


_TYPE_TO_KIND = {"country": "country", "state": "country", "city": "city", "town": "city", "place": "city",
                 "person": "person", "human": "person", "man": "person", "woman": "woman", "mother": "woman",
                 "book": "book", "novel": "book", "work": "work", "film": "work", "album": "work",
                 "university": "organization", "organization": "organization", "company": "organization",
                 "school": "organization", "college": "organization"}


def kind_for_type(type_phrase: str) -> str:
    """The generator kind for an entity-type phrase ("creative work" -> work); default entity."""
    for word in reversed(type_phrase.lower().split()):
        if word in _TYPE_TO_KIND:
            return _TYPE_TO_KIND[word]
    return "entity"


def shape_problem(name: str, max_words: int | None = None) -> str | None:
    """Why `name` breaks the SPEC §4.2 shape rules (length, characters, words), or None."""
    if not MIN_LEN <= len(name) <= MAX_LEN:
        return f"length {len(name)} outside {MIN_LEN}-{MAX_LEN}"
    if not all(ch.isalnum() or ch in _PUNCTUATION for ch in name) or name != name.strip():
        return "characters other than letters, digits, space, ', - and ."
    if not any(ch.isalpha() for ch in name):
        return "no letter"
    if max_words is not None and len(name.split()) > max_words:
        return f"more than {max_words} words"
    return None


class VocabGuard:
    """The subject/object rule: a subject may not contain a vocabulary object as whole words,
    nor be a substring of one (case-insensitive), so subject and object spans never overlap."""

    def __init__(self, vocab: Iterable[str]):
        self._objects = sorted({norm(v) for v in vocab if v.strip()})
        self._words = [re.compile(r"(?<!\w)" + re.escape(o) + r"(?!\w)") for o in self._objects]

    def clash(self, name: str) -> str | None:
        """The first vocabulary object `name` clashes with, or None."""
        low = norm(name)
        for obj, pattern in zip(self._objects, self._words):
            if low in obj or pattern.search(low):
                return obj
        return None


def fold(name: str) -> str:
    """The comparison form of a name: accents dropped (NFKD), case-folded, letters and digits only."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch)).casefold()


class NearDuplicates:
    """Names that differ by at most one edit after `fold` ("Brymnaria" / "Brymnari", "Kora" / "Kira",
    "Brym-Naria" / "brymnaria"): two names are near-duplicates when deleting at most one character
    from each makes them equal: one insertion, deletion, substitution or adjacent swap, or one letter
    dropped and another added elsewhere ("Aurora Vale" / "Aurora Vail").

    Each name is indexed under its folded form and its single-character deletions, so a look-up costs
    O(length) however many names are indexed (a pairwise edit distance would be quadratic).
    """

    def __init__(self, names: Iterable[str] = ()):
        self._owner: dict[str, str] = {}
        for name in names:
            self.add(name)

    @staticmethod
    def _keys(name: str) -> set[str]:
        folded = fold(name)
        return {folded, *(folded[:i] + folded[i + 1:] for i in range(len(folded)))}

    def match(self, name: str) -> str | None:
        """An indexed name `name` nearly duplicates, or None."""
        return next((self._owner[k] for k in self._keys(name) if k in self._owner), None)

    def add(self, name: str) -> None:
        for key in self._keys(name):
            self._owner.setdefault(key, name)


class SubstringIndex:
    """Names (in `norm` form) held so that "is one of them inside `key`, or `key` inside one of
    them?" costs O(len(key)**2) set look-ups plus one scan of the names sharing `key`'s rarest
    3-character piece, instead of a pass over every name: checking each of 50,000 subjects against all
    accepted ones was quadratic (over 120 s on the 2-core AMD EPYC; docs/PERFORMANCE.md)."""

    GRAM = 3

    def __init__(self, names: Iterable[str] = ()):
        self._names: set[str] = set()
        self._by_gram: dict[str, list[str]] = {}
        for name in names:
            self.add(name)

    def _grams(self, key: str) -> set[str]:
        return {key[i:i + self.GRAM] for i in range(len(key) - self.GRAM + 1)}

    def conflicts(self, key: str) -> bool:
        pieces = (key[i:j] for i in range(len(key)) for j in range(i + 1, len(key) + 1))
        if "" in self._names or any(p in self._names for p in pieces):
            return True         # a held name inside key (or equal to it; "" is inside every key)
        grams = self._grams(key)
        # A held name containing key contains every piece of key: scan the smallest bucket only.
        holders = min((self._by_gram.get(g, ()) for g in grams), key=len) if grams else self._names
        return any(key in other for other in holders)

    def add(self, key: str) -> None:
        if key not in self._names:
            self._names.add(key)
            for gram in self._grams(key):
                self._by_gram.setdefault(gram, []).append(key)


def generate(kind: str, n: int, rng: np.random.Generator, accept: Callable[[str], bool],
             taken: Iterable[str] = (), conflict_free: bool = False,
             max_attempts: int | None = None) -> list[str]:
    """`n` unique names of `kind` in draw order; `accept` applies the caller's extra rules.

    Names equal (case-insensitively) to one in `taken` are skipped, so appending to an existing
    file never repeats a subject. `conflict_free` also rejects a name in a substring conflict with
    an accepted one (for invented object vocabularies, whose entries become each other's
    distractors). Stops with an error after `max_attempts` candidates.
    """
    seen = {norm(t) for t in taken}
    held = SubstringIndex(seen) if conflict_free else None
    names: list[str] = []
    limit = max_attempts if max_attempts is not None else 200 * n + 1000
    for _ in range(limit):
        if len(names) == n:
            break
        name = candidate(kind, rng)
        key = norm(name)
        if key in seen or shape_problem(name) or not accept(name):
            continue
        if held is not None:
            if held.conflicts(key):
                continue
            held.add(key)
        seen.add(key)
        names.append(name)
    if len(names) < n:
        raise UserError(f"names ({kind})", f"only {len(names)} of {n} unique names after {limit} candidates",
                        "lower num_facts or use subjects.source=file")
    return names
