"""How an object is written: as stored, or in title case, where it is scored (`mc.object_case`,
`loss_probe.object_case`) and where facts are generated (`objects.case`).

The vocabularies and fact files are lower-case (SPEC §4.3), which is not how a model has mostly
read the names: Qwen2.5-Coder-0.5B answers 0.77 of the 60 real-capital questions with lower-case
options and 0.98 with the same options title-cased (bf16, 2-core AMD EPYC with AVX512_BF16;
docs/RESULTS.md §1.8; trained in title case, §1.9). `title` capitalises every word and every hyphenated part ("porto-novo" ->
"Porto-Novo", "saint george's" -> "Saint George's"), except the small words below inside a name
("port of spain" -> "Port of Spain"). Acronyms come out wrong ("eth zurich" -> "Eth Zurich").
"""
from __future__ import annotations

from .errors import UserError

CASES = ("as_is", "title")
TITLE_RULE = 2      # in the loss probe's result hash; 1 was str.title ("Port Of Spain", "Saint George'S")
LOWER_INSIDE = frozenset({"of", "la", "le", "de", "del", "da", "do", "du", "des", "the", "and"})


def written(obj: str, case: str, key: str) -> str:
    """`obj` as `case` writes it; an unknown case is refused under `key` (the config key)."""
    if case == "as_is":
        return obj
    if case == "title":
        return title(obj)
    raise UserError(key, f"{case!r} is not one of {', '.join(CASES)}")


def title(text: str) -> str:
    words = text.split(" ")
    return " ".join(w if i and w in LOWER_INSIDE else "-".join(p[:1].upper() + p[1:] for p in w.split("-"))
                    for i, w in enumerate(words))
