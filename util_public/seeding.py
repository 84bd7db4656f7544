"""Named random streams: every random purpose draws from its own seeded generator.

A stream is `numpy.random.Generator(PCG64(SeedSequence([seed, tag(purpose), tag(relation), fact_id])))`
with `tag(x)` = the first 4 bytes of sha256(x). Per-fact streams make fact i's draws independent of
how many facts are generated or evaluated. Python's `hash()` and the global `random` are never used.
"""
from __future__ import annotations

import hashlib

import numpy as np


def tag(value: object) -> int:
    return int.from_bytes(hashlib.sha256(str(value).encode("utf-8")).digest()[:4], "big")


def stream(seed: int, purpose: str, relation_id: str | None = None,
           fact_id: int | None = None) -> np.random.Generator:
    entropy = [int(seed), tag(purpose), tag(relation_id if relation_id is not None else "")]
    if fact_id is not None:
        entropy.append(int(fact_id))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
