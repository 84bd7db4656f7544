"""The one per-request score record that every backend returns (lm-evaluation-harness style).

Metrics (`metrics.py`) derive from these alone, so a backend never computes accuracy itself and
two backends are compared record by record.
"""
from __future__ import annotations

import math
from typing import Hashable, NamedTuple


class ScoreRecord(NamedTuple):
    """Immutable; a NamedTuple because a 100-option evaluation creates one per option (cheap to build)."""
    key: Hashable
    sum_logprob: float        # sum over continuation tokens of log p(token | prefix), fp64 accumulated
    first_logprob: float      # the first continuation token's alone: where options part; the rest spell the word out
    n_tokens: int             # continuation tokens scored
    n_chars: int              # continuation characters (separator included): acc_norm's divisor
    is_greedy: bool           # every continuation token was the arg-max at its position
    boundary_merge: bool = False


def from_token_logprobs(request, token_logprobs, greedy_flags) -> ScoreRecord:
    """A record from one request's per-token log-probs (floats) and arg-max flags."""
    return ScoreRecord(request.key, math.fsum(map(float, token_logprobs)), float(token_logprobs[0]),
                       len(request.continuation), request.n_chars, bool(all(greedy_flags)), request.boundary_merge)
