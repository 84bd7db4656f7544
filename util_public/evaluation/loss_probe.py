"""Per-token loss probe (SPEC §6.6): the cross-entropy of every token of "s1{sep}s2".

s1 is the prompt-type context, s2 the object (case as stored unless `object_case: title`).
The string is tokenised once and scored in one forward; tokens are labelled s1 or s2 by the
MC boundary rule, and position 0 (never predicted) is left out.
"""
from __future__ import annotations

from ..facts import Fact
from .. import objectcase
from .requests import Request, split


def probe_request(tokenizer, fact: Fact, context: str, separator: str, bos: list[int], case: str) -> tuple[Request, int]:
    """A request scoring every token after the first, and the index where s2 starts."""
    parts = split(tokenizer, context, separator + objectcase.written(fact.object, case, "loss_probe.object_case"), bos,
                  fact.fact_id)
    ids = parts.context + parts.continuation
    whole = Request(fact.fact_id, ids[:1], ids[1:], parts.n_chars, parts.boundary_merge)
    return whole, len(parts.context)


def record(fact: Fact, context: str, separator: str, case: str, request: Request, s2_start: int,
           token_lps: list[float], tokenizer, seen: bool | None) -> dict:
    """The per-fact loss record; `token_lps[k]` is the log-prob of token k + 1 of the sequence."""
    ids = request.context + request.continuation
    tokens = []
    for pos in range(1, len(ids)):
        kind = "s2" if pos >= s2_start else "s1"
        tokens.append({"token_id": ids[pos], "token_text": tokenizer.decode([ids[pos]]),
                       "token_type": kind, "loss": -token_lps[pos - 1]})
    s1 = [t["loss"] for t in tokens if t["token_type"] == "s1"]
    s2 = [t["loss"] for t in tokens if t["token_type"] == "s2"]
    return {"fact_id": fact.fact_id, "relation_id": fact.relation_id, "s1": context,
            "s2": separator + objectcase.written(fact.object, case, "loss_probe.object_case"),
            "s1_loss": sum(s1) / len(s1) if s1 else None,
            "s2_loss": sum(s2) / len(s2), "boundary_merge": request.boundary_merge, "token_losses": tokens,
            "seen": seen}
