"""One error type for bad input, and the exit-code convention of every entry point.

`UserError` is raised by validation anywhere in the library; entry points turn it into the
message `error: <where>: <problem>; <hint>` and exit code 2 (1 is left for real bugs).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

EXIT_BAD_INPUT = 2


class UserError(Exception):
    """Invalid input or configuration, found by the project's own validation."""

    def __init__(self, where: str, problem: str, hint: str | None = None):
        self.where, self.problem, self.hint = str(where), problem, hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"error: {self.where}: {self.problem}"
        return f"{text}; {self.hint}" if self.hint else text


@contextlib.contextmanager
def under(key: str) -> Iterator[None]:
    """Errors raised inside name the setting `key` first: what the user wrote, then what was wrong
    with it (a pooled relation's unknown id said only "relation '999'")."""
    try:
        yield
    except UserError as err:
        if err.where == key or err.where.startswith(f"{key}: "):     # named already
            raise
        raise UserError(f"{key}: {err.where}", err.problem, err.hint) from None


def exit_on_user_error(fn: Callable[[], T], debug: bool | None = None) -> T:
    """Run `fn`; on `UserError` print its one-line message and exit 2 (traceback only in debug)."""
    try:
        return fn()
    except UserError as err:
        if debug if debug is not None else os.environ.get("MTG_DEBUG") == "1":
            raise
        print(err.message, file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
