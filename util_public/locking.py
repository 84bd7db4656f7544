"""Exclusive inter-process locks on a lock file (`flock`), with a timeout and a named holder.

`exclusive` waits up to a timeout (shared files such as `models.json`); `sole_writer` does not
wait: a second writer of one run or result directory stops at once with "already running". A
lock file exists only while its lock is held (it is removed on release), and the kernel releases
a `flock` when its process dies, so a killed holder never leaves a stale lock. A lock is only
taken on the file the path still names (checked after `flock`), so removing a lock file never
lets two holders in.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from .atomicio import make_parents, remove_empty
from .errors import UserError


def _open(lock_path: Path, created: list[Path]) -> int:
    """Open (create) the lock file; folders created for it are appended to `created`. A folder
    that another holder removed (empty) between its creation and the open is made again."""
    attempts = 0
    while True:
        try:
            created += make_parents(lock_path)
            return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            attempts += 1
            if isinstance(exc, FileNotFoundError) and attempts < 3:
                continue
            raise UserError(str(lock_path), f"cannot create the lock file ({exc.strerror or exc})",
                            "choose a writable location") from None


def _holder(lock_path: Path) -> str:
    with contextlib.suppress(OSError):
        return lock_path.read_text(errors="replace").strip() or "unknown"
    return "unknown"


def _still_named(fd: int, lock_path: Path) -> bool:
    """Whether `lock_path` still names the file open as `fd` (a releasing holder may remove it)."""
    try:
        return os.stat(lock_path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike, timeout_s: float = 600.0, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path`; its content names the holder (host, pid, time).

    Not acquired within `timeout_s`: a `UserError` naming the lock and its holder; with `busy`,
    the error names `busy` (what the lock protects) as already being written."""
    lock_path = Path(lock_path)
    created: list[Path] = []
    fd, acquired = _open(lock_path, created), False
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _still_named(fd, lock_path):
                    acquired = True
                    break
                os.close(fd)                  # locked a file its holder had just removed: retry
                fd = -1
                fd = _open(lock_path, created)
                continue
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    if busy:
                        raise UserError(busy, f"already running in another process ({_holder(lock_path)})",
                                        "wait for it to finish, or stop it first") from None
                    raise UserError(str(lock_path), f"lock not acquired in {timeout_s:.0f} s (held by "
                                    f"{_holder(lock_path)})",
                                    "wait for the holder, or remove the lock file if that process is gone") from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        os.write(fd, f"{socket.gethostname()} pid={os.getpid()} since={since}\n".encode())
        yield
    finally:
        if acquired:
            with contextlib.suppress(OSError):
                lock_path.unlink()            # while still held: see `_still_named`
        if fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        remove_empty(created)                 # folders made only for the lock (a failed run's)


def sole_writer(lock_path: str | os.PathLike, what: str | os.PathLike):
    """The lock of one output directory `what`: taken at once, or "already running" (exit 2)."""
    return exclusive(lock_path, timeout_s=0, busy=str(what))
