"""Metrics from score records (SPEC §6.3 step 5), all in log space.

Per fact: the gold is correct only if its score beats every other option strictly (a tie is
wrong and counted), so the result does not depend on where the gold sits. Normalised
probabilities use logsumexp (no underflow, no division by zero). Per slice (`all`, `seen`,
`unseen`): means over facts; an empty slice reports n = 0 and nulls, with a warning.
"""
from __future__ import annotations

import math
import sys
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError
from . import textprobe
from .records import ScoreRecord


def _choice(values: np.ndarray, gold: int) -> tuple[int, bool]:
    """(predicted option, correct): the gold only when it beats every other option strictly; in a
    tie the first best other option is the prediction, as the arg-max with the gold last would say."""
    others = np.delete(np.arange(values.size), gold)
    if not others.size:
        return gold, True
    best = int(others[np.argmax(values[others])])
    return (gold, True) if values[gold] > values[best] else (best, False)


def mc_fact(scores: Sequence[ScoreRecord], gold: int, where: str = "question") -> dict:
    """Per-fact MC fields of SPEC §3.6 from the option records (in option order)."""
    s = np.array([r.sum_logprob for r in scores], dtype=np.float64)
    if np.isnan(s).any() or np.isposinf(s).any():     # the model's log-probabilities broke down
        raise UserError(where, f"option scores are not log-probabilities: {s.tolist()[:5]}...",
                        "non-finite logits; in bf16 or fp16 try model.dtype=fp32")
    chars = np.array([r.n_chars for r in scores], dtype=np.float64)
    others = np.delete(s, gold)
    best_other = others.max() if others.size else -math.inf
    lse = float(np.logaddexp.reduce(s))
    norm = s / chars
    pred, correct = _choice(s, gold)
    pred_norm, correct_norm = _choice(norm, gold)
    return {
        "pred_index": pred,
        "pred_index_norm": pred_norm,
        "correct": correct,
        "tie": bool(s[gold] == best_other),
        "correct_norm": correct_norm,
        "gold_logprob": float(s[gold]),
        "gold_prob": float(math.exp(s[gold] - lse)) if math.isfinite(lse) else 0.0,
        "gold_rank": int(1 + np.sum(others > s[gold])),
        "boundary_merge": any(r.boundary_merge for r in scores),
    }


def calibrated(scores: Sequence[ScoreRecord], null_scores: Sequence[ScoreRecord], gold: int) -> dict:
    """Per-fact fields of `mc.calibration`: the choice by log p(option | question) minus
    log p(option | the subjectless question), the gold correct only if it wins strictly."""
    null = np.array([r.sum_logprob for r in null_scores], dtype=np.float64)
    pred, correct = _choice(np.array([r.sum_logprob for r in scores], dtype=np.float64) - null, gold)
    return {"option_null_logprobs": null.tolist(), "option_null_first_logprobs": [r.first_logprob for r in null_scores],
            "pred_index_calibrated": pred, "correct_calibrated": correct}


def slices(records: list[dict]) -> dict[str, list[dict]]:
    """`all`, plus `seen`/`unseen` when the records carry a seen flag (True/False, not None)."""
    out = {"all": records}
    if records and any(r.get("seen") is not None for r in records):
        out["seen"] = [r for r in records if r.get("seen") is True]
        out["unseen"] = [r for r in records if r.get("seen") is False]
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


MC_METRICS: dict[str, Callable[[list[dict]], float | int | None]] = {
    "accuracy": lambda rs: _mean([float(r["correct"]) for r in rs]),
    "prob_mass": lambda rs: _mean([r["gold_prob"] for r in rs]),
    "acc_norm": lambda rs: _mean([float(r["correct_norm"]) for r in rs]),
    # mc.calibration only, else null: the choice after subtracting each option's subjectless score
    "acc_calibrated": lambda rs: (_mean([float(r["correct_calibrated"]) for r in rs])
                                  if "correct_calibrated" in rs[0] else None),
    "gold_prob_raw": lambda rs: _mean([math.exp(r["gold_logprob"]) for r in rs]),
    "mean_gold_rank": lambda rs: _mean([r["gold_rank"] for r in rs]),
    "n_ties": lambda rs: sum(bool(r["tie"]) for r in rs),
    "n_boundary_merges": lambda rs: sum(bool(r["boundary_merge"]) for r in rs),
    # pooled (cross-relation) questions only, else null: the choice (by summed / per-character
    # score) is an object of the asked relation
    "asked_type_wins": lambda rs: _mean([float(r["asked_type_win"]) for r in rs]) if "asked_type_win" in rs[0] else None,
    "asked_type_wins_norm": lambda rs: (_mean([float(r["asked_type_win_norm"]) for r in rs])
                                        if "asked_type_win_norm" in rs[0] else None),
}

GEN_METRICS = {name: (lambda rs, name=name: _mean([float(r[name]) for r in rs]))
               for name in ("exact", "prefix", "contains")}
GEN_METRICS["emission"] = lambda rs: _mean([float(r["emitted"]) for r in rs])

LOSS_METRICS = {"avg_loss": lambda rs: _mean([r["s2_loss"] for r in rs]),
                "avg_s1_loss": lambda rs: _mean([r["s1_loss"] for r in rs if r["s1_loss"] is not None])}

PPL_METRICS = {name: (lambda rs, name=name: textprobe.summary_metrics(rs)[name])
               for name in ("n_tokens", "nll_per_token", "perplexity", "bits_per_byte")}

TASK_METRICS = {"mc": MC_METRICS, "gen": GEN_METRICS, "loss": LOSS_METRICS, "ppl": PPL_METRICS}


def summarize(task: str, records: list[dict], where: str = "") -> dict[str, dict]:
    """slice -> {n, metric: value}; empty slices are reported with n = 0 and a warning."""
    out = {}
    for name, rows in slices(records).items():
        if not rows:
            print(f"warning: {where}: slice {name!r} is empty (n = 0)", file=sys.stderr)
        out[name] = {"n": len(rows), **{k: (fn(rows) if rows else None) for k, fn in TASK_METRICS[task].items()}}
    return out


def mean_sd(values: list[float | None]) -> dict:
    """Mean and sample standard deviation over prompts or relations (nulls skipped). One value has
    no spread: sd None, not 0 (a `50+71` summary with relation 71's slice empty showed 7.100±0.000)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"mean": None, "sd": None}
    return {"mean": float(np.mean(xs)), "sd": float(np.std(xs, ddof=1)) if len(xs) > 1 else None}
