"""Distractor options under the substring rule (SPEC §4.3).

For each fact, with its own stream (seed, "distractors", relation, fact_id): the candidates are the
vocabulary entries that do not conflict with the gold; they are visited in a random permutation and
one is accepted when it conflicts with no accepted distractor ("first drawn wins"), until enough are
accepted. Conflicts between vocabulary entries are computed once per vocabulary as a boolean matrix,
so each fact costs one permutation and a few vector operations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .. import catalogue, filecache
from ..errors import UserError
from ..facts import contained_pairs, norm
from ..seeding import stream


def vocab_pool(relation_id: str, data_root: Path | None = None) -> "DistractorPool":
    """The relation's object vocabulary as a pool, built once per version of its file."""
    return _pool_of(catalogue.vocab_file(relation_id, data_root))


@filecache.per_content
def _pool_of(path: Path) -> "DistractorPool":
    return DistractorPool(catalogue.read_vocab(path))


class DistractorPool:
    """A candidate list (e.g. a relation's vocabulary) with its pairwise conflict matrix."""

    def __init__(self, candidates: list[str]):
        self.candidates = list(candidates)
        normed = [norm(c) for c in self.candidates]
        n = len(normed)
        self._normed = normed
        self._conflict = np.eye(n, dtype=bool)
        for i, j in contained_pairs(normed):
            self._conflict[i, j] = self._conflict[j, i] = True

    def __len__(self) -> int:
        return len(self.candidates)

    def gold_conflicts(self, gold: str) -> np.ndarray:
        g = norm(gold)
        return np.fromiter((g in c or c in g for c in self._normed), dtype=bool, count=len(self._normed))

    def draw(self, gold: str, count: int, rng: np.random.Generator,
             exclude: Iterable[str] = ()) -> tuple[list[str], int]:
        """Up to `count` distractors for `gold` in acceptance order, plus how many were accepted.
        Candidates conflicting with `gold` or with any string of `exclude` are never drawn."""
        blocked = self.gold_conflicts(gold)
        for other in exclude:
            blocked |= self.gold_conflicts(other)
        candidates = np.flatnonzero(~blocked)
        accepted: list[int] = []
        for idx in candidates[rng.permutation(len(candidates))]:
            if blocked[idx]:
                continue
            accepted.append(int(idx))
            if len(accepted) == count:
                break
            blocked |= self._conflict[idx]
        return [self.candidates[i] for i in accepted], len(accepted)


def draw_distractors(pool: DistractorPool, gold: str, count: int, seed: int, relation_id: str,
                     fact_id: int, purpose: str = "distractors", exclude: Iterable[str] = ()) -> list[str]:
    """Exactly `count` distractors for one fact (stream `purpose`), or an error naming the fact
    and the shortfall."""
    rng = stream(seed, purpose, relation_id, fact_id)
    options, accepted = pool.draw(gold, count, rng, exclude)
    if accepted < count:
        raise UserError(f"relation {relation_id}: fact_id {fact_id}",
                        f"only {accepted} of {count} distractors possible for gold {gold!r} "
                        f"(vocabulary size {len(pool)}, after removing the gold, its exclusions and substring conflicts)",
                        "use a larger or less overlapping vocabulary, or fewer num_options")
    return options

