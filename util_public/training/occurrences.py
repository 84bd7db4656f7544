"""Search-based occurrences of a subject or object inside an assembled text (SPEC §5.4).

An occurrence is a case-sensitive match that starts at the beginning of the string, after
whitespace, or right after a special token, and ends at the end of the string or before a
character that is neither a letter nor a digit. The boundary rule keeps "Paris" from matching
inside "Parisian" and "is" inside "Veloria is".
"""
from __future__ import annotations

from typing import Iterable


def find(text: str, needle: str, specials: Iterable[str] = ()) -> list[tuple[int, int]]:
    """All non-overlapping boundary-respecting occurrences of `needle`, in order."""
    if not needle:
        return []
    specials = tuple(s for s in specials if s)
    out, start = [], 0
    while True:
        i = text.find(needle, start)
        if i < 0:
            return out
        end = i + len(needle)
        if _starts_ok(text, i, specials) and _ends_ok(text, end):
            out.append((i, end))
            start = end
        else:
            start = i + 1


def _starts_ok(text: str, i: int, specials: tuple[str, ...]) -> bool:
    return i == 0 or text[i - 1].isspace() or any(text.endswith(s, 0, i) for s in specials)


def _ends_ok(text: str, end: int) -> bool:
    return end == len(text) or not text[end].isalnum()
