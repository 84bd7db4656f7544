"""Numeric limits of config values, as one table per config, checked before anything loads.

A limit reads like the rule it states: `"gen.max_new_tokens": ">= 1"`, `"train.learning_rate": "> 0"`,
`"vllm.gpu_memory_utilization": "> 0, <= 1"`. A null (optional) value is not checked. A value
outside its limit is a `UserError` naming the key: `error: gen.max_new_tokens: must be >= 1, got -5`.
"""
from __future__ import annotations

import math
import operator
from typing import Any

from .errors import UserError

# Every seed: numpy's legacy seeding (through transformers' `set_seed`) takes 0 .. 2**32 - 1 only.
SEED = ">= 0, <= 4294967295"

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def value_at(cfg: Any, dotted: str) -> Any:
    """The value at a dotted key of a dataclass config (`import.x` is stored as `import_`)."""
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, "import_" if part == "import" and not hasattr(value, "import") else part)
    return value


def _rules(text: str) -> list[tuple[str, float]]:
    out = []
    for rule in text.split(","):
        op, bound = rule.split()
        out.append((op, float(bound)))
    return out


def check(cfg: Any, table: dict[str, str]) -> None:
    """Every key of `table` whose value is set is a finite number within its limits (`inf`, and
    `1e400`, which YAML reads as inf, pass every lower bound: a learning rate of inf trained a model
    to NaN)."""
    for key, text in table.items():
        value = value_at(cfg, key)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(key, f"must be a finite number ({text}), got {value}")
        for op, bound in _rules(text):
            if not _OPS[op](value, bound):
                raise UserError(key, f"must be {text}, got {value}")
