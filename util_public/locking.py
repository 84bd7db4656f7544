"""Exclusive inter-process locks on a lock file (`flock`), with a timeout and a named holder."""
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

from .errors import UserError


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path`; its content names the holder (host, pid, time)."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    holder = lock_path.read_text(errors="replace").strip() or "unknown"
                    raise UserError(str(lock_path), f"lock not acquired in {timeout_s:.0f} s (held by {holder})",
                                    "wait for the holder, or remove the lock file if that process is gone") from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        os.write(fd, f"{socket.gethostname()} pid={os.getpid()} since={since}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
