"""Parse a file once per content.

A cache keyed by the path alone serves stale content to a long-lived process (a notebook, the
recipe executor, a test session) after the file is edited or replaced. Here the key is the path
and a hash of the file's bytes: reading and hashing a catalogue, vocabulary or manifest costs
microseconds, parsing it (YAML, a vocabulary's conflict matrix) is what is saved. File times
would be cheaper but miss a same-size edit within one timestamp tick.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def _content(path: Path) -> str | None:
    """The hash of the file's bytes (None when it cannot be read: the loader reports that)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def per_content(load: Callable[[Path], T]) -> Callable[[Path], T]:
    """`load(path)`, cached per path and file content."""
    @functools.lru_cache(maxsize=64)      # old contents age out
    def cached(path: Path, content: str | None) -> T:
        return load(path)

    @functools.wraps(load)
    def wrapper(path: Path) -> T:
        return cached(path, _content(path))

    return wrapper
