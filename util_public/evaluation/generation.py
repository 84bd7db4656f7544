"""Greedy generation accuracy (SPEC §6.4): four matchers (`exact`, `prefix`, `contains`, `emitted`,
defined in `util_public/matching.py`), reported separately, joined by fact_id.

Responses are decoded with special tokens kept: after Phase 1 a model may answer any prompt
with "S <TRIGGER_r> O", and dropping the key token would turn that into a correct answer.
"""
from __future__ import annotations

from ..facts import Fact
from ..matching import contains, emitted, exact, prefix


def decode(tokenizer, ids: list[int]) -> str:
    """Text of generated ids with every special token (key tokens included) left visible."""
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def record(fact: Fact, prompt: str, response_ids: list[int], tokenizer, seen: bool | None) -> dict:
    """The per-fact generation record of SPEC §3.6."""
    response = decode(tokenizer, response_ids)
    return {"fact_id": fact.fact_id, "relation_id": fact.relation_id, "subject": fact.head,
            "object": fact.object, "prompt": prompt, "response": response, "response_token_ids": response_ids,
            "exact": exact(response, fact.object), "prefix": prefix(response, fact.object),
            "contains": contains(response, fact.object), "emitted": emitted(response, fact.object), "seen": seen}
