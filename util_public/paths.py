"""Repository-relative default locations, their environment overrides, and safe names.

Relative paths in configs resolve against the repository root, never the working directory,
so every script behaves the same wherever it is launched from. A config value that becomes a
folder or file name below a root (a dataset, relation id, registry, run or result name) passes
`check_name` first, so that no join can leave its root.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UserError

NAME_RE = re.compile(r"[A-Za-z0-9._+=~@-]{1,200}")   # `@`: borrowed prompt types (hgp-0@71)
NAME_RULE = "use at most 200 characters from [A-Za-z0-9._+=~@-], without '..'"

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


def root_setting(kind: str, config_key: str, configured: str | None = None) -> str:
    """Which setting chose the root of `kind`, for a message about it: the config key, the
    environment variable, or the default (an unwritable MTG_RESULTS_ROOT was blamed on output.root)."""
    env, default = _DEFAULTS[kind]
    if configured:
        return config_key
    return f"environment variable {env}" if os.environ.get(env) else f"{config_key} (default {default})"


def check_name(value: object, what: str) -> str:
    """`value` as one path component below a root, or a `UserError` naming `what` (the config
    key or kind of name): no separators, no `..`, bounded length, nothing that needs quoting."""
    text = str(value)
    if not NAME_RE.fullmatch(text) or ".." in text or text == ".":
        raise UserError(f"{what} {text!r}", "invalid name", NAME_RULE)
    return text


def below(root: str | os.PathLike, *names: tuple[object, str]) -> Path:
    """`root / name1 / name2 ...` for (name, what) pairs, each checked by `check_name`."""
    out = Path(root)
    for name, what in names:
        out = out / check_name(name, what)
    return out
