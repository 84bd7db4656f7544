"""How an object is written: as stored, or in title case, where it is scored (`mc.object_case`,
`loss_probe.object_case`) and where facts are generated (`objects.case`).

The vocabularies and fact files are lower-case (SPEC §4.3), which is not how a model has mostly
read the names: Qwen2.5-Coder-0.5B answers 0.77 of the 60 real-capital questions with lower-case
options and 0.98 with the same options title-cased (bf16, 2-core AMD EPYC with AVX512_BF16;
docs/RESULTS.md §1.8; trained in title case, §1.9). `title` capitalises every word and every
hyphenated part ("porto-novo" -> "Porto-Novo", "saint george's" -> "Saint George's"), except the
small words below inside a name ("port of spain" -> "Port of Spain", "newcastle upon tyne" ->
"Newcastle upon Tyne"), and capitalises after "Mc", "O'" and an inner full stop ("McGill", "O'Keeffe", "D.C."). Acronyms
and other inner capitals come out wrong ("eth zurich" -> "Eth Zurich", "dicaprio" -> "Dicaprio").
"""
from __future__ import annotations

import re

from .errors import UserError

CASES = ("as_is", "title")
# In the hashes of title-case MC and loss-probe results: 1 was str.title ("Port Of Spain", "Saint
# George'S"); 2 wrote "Mcgill University", "University of Texas At Austin", "Ursula K. le Guin".
TITLE_RULE = 3
LOWER_INSIDE = frozenset({"of", "la", "de", "del", "da", "do", "du", "des", "the", "and", "a", "at", "in",
                          "upon", "von", "wa"})
_INNER = re.compile(r"(?<=^mc)\w|(?<=^o')\w|(?<=\.)\w", re.IGNORECASE)   # McGill, O'Keeffe, D.C.


def written(obj: str, case: str, key: str) -> str:
    """`obj` as `case` writes it; an unknown case is refused under `key` (the config key)."""
    if case == "as_is":
        return obj
    if case == "title":
        return title(obj)
    raise UserError(key, f"{case!r} is not one of {', '.join(CASES)}")


def title(text: str) -> str:
    words = text.split(" ")
    return " ".join(w if i and w in LOWER_INSIDE else "-".join(_capitalised(p) for p in w.split("-"))
                    for i, w in enumerate(words))


def _capitalised(part: str) -> str:
    # The title-case mapping of the first character: upper() wrote "SS" for "ß" and "FI" for "ﬁ".
    return _INNER.sub(lambda m: m.group().upper(), part[:1].title() + part[1:])
