"""Repository-relative default locations and their environment overrides.

Relative paths in configs resolve against the repository root, never the working directory,
so every script behaves the same wherever it is launched from.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_DEFAULTS = {
    "data": ("MTG_DATA_ROOT", "data"),
    "runs": ("MTG_RUNS_ROOT", "runs"),
    "results": ("MTG_RESULTS_ROOT", "evaluation/test_result"),
    "registry": ("MTG_MODELS_JSON", "models.json"),
    "model_cache": ("MTG_MODEL_CACHE", ".model_cache"),
}


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path; relative ones are taken from the repository root."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else REPO_ROOT / p


def root(kind: str, configured: str | None = None) -> Path:
    """The root of `kind` (data, runs, results, registry, model_cache).

    Precedence: an explicit config value, then the environment variable, then the default.
    """
    env, default = _DEFAULTS[kind]
    value = configured or os.environ.get(env) or default
    return resolve(value)
