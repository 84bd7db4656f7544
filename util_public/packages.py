"""Optional Python packages: checked when the config asks for them, before any work starts.

A config that needs a package the environment lacks (`train.report_to=wandb` without wandb, a
DeepSpeed launch without deepspeed, LLM data generation without openai, `summarize.py --png`
without matplotlib) stops with one line naming the key and the install command, not with an
ImportError after the model loaded or the run directory was created.
"""
from __future__ import annotations

import importlib.util

from .errors import UserError


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require(module: str, key: str, install: str | None = None) -> None:
    """`module` must be importable, else a `UserError` naming the config `key` that needs it."""
    if not installed(module):
        raise UserError(key, f"needs the Python package {module!r}, which is not installed",
                        f"{install or 'pip install ' + module}, or change {key}")
