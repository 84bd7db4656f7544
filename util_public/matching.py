"""Matching a generated answer against the gold object: one home for the generation metrics'
matchers (SPEC §6.4) and training's memorization check (`prefix`).

Both strings are NFKC-normalised, stripped, lower-cased and their whitespace runs collapsed.
- contains: the gold occurs anywhere (the original's metric), in either of two comparisons: the
  gold with ':', ',' and '.' deleted inside the response (the original's rule: "USA" for "u.s.a.",
  "1000" for "1,000"), or both with them turned into spaces (what the original's rule could never
  credit: "J. K. Rowling." or "J.K. Rowling" for the gold "j. k. rowling"). The response itself
  never loses them: "1.5" does not become "15";
- prefix: the response starts with the gold, followed by a non-alphanumeric or the end;
- exact: the response starts with the gold, followed by the end, a newline, or "." + space/end;
- emitted: both strings with ':', ',' and '.' turned into spaces, and the gold must occur as a whole word or
  phrase (no letter or digit on either side), so "rome" in "chromosome" does not count. Its rate
  is `emission`: under a prompt whose answer is not the memorized object (`unrelated-k`, another relation's `X@B`) it measures how often the
  model says the memorized object anyway (specificity); under the train prompt it is the
  whole-word variant of `contains`.
"""
from __future__ import annotations

import re
import unicodedata

# Enters every generation result's hash: raised when a matcher's definition changes, so that
# stored results are recomputed once rather than served with the old verdicts.
# `contains` with ':', ',' and '.' - 1: spaced in both strings; 2: spaced or deleted in both;
# 3: spaced in both, or deleted from the gold only (the original's rule).
VERSION = 3


def _normal(text: str, keep_newlines: bool = False) -> str:
    text = unicodedata.normalize("NFKC", text).strip().lower()
    if keep_newlines:  # collapse runs inside each line; the exact matcher needs line ends
        return "\n".join(" ".join(line.split()) for line in text.split("\n"))
    return " ".join(text.split())


def _spaced(text: str) -> str:
    return " ".join(re.sub(r"[:,.]", " ", _normal(text)).split())


def contains(response: str, gold: str) -> bool:
    deleted = " ".join(re.sub(r"[:,.]", "", _normal(gold)).split())
    spaced = _spaced(gold)
    return (bool(deleted) and deleted in _normal(response)) or (bool(spaced) and spaced in _spaced(response))


def prefix(response: str, gold: str) -> bool:
    r, g = _normal(response), _normal(gold)
    if not g or not r.startswith(g):
        return False
    rest = r[len(g):]
    return not rest or not rest[0].isalnum()


def exact(response: str, gold: str) -> bool:
    r, g = _normal(response, keep_newlines=True), _normal(gold)
    if not g or not r.startswith(g):
        return False
    rest = r[len(g):]
    return rest == "" or rest[0] == "\n" or (rest[0] == "." and (len(rest) == 1 or rest[1].isspace()))


def emitted(response: str, gold: str) -> bool:
    return _as_phrase(_spaced(response), _spaced(gold))


def _as_phrase(r: str, g: str) -> bool:
    """`g` occurs in `r` with no letter or digit on either side."""
    if not g:
        return False
    at = r.find(g)
    while at >= 0:
        end = at + len(g)
        if (at == 0 or not r[at - 1].isalnum()) and (end == len(r) or not r[end].isalnum()):
            return True
        at = r.find(g, at + 1)
    return False
