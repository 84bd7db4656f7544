"""Atomic file and directory writes: a final name never holds partial content.

Files go to `.{name}.tmp-{pid}` in the same directory, are fsynced and renamed with
`os.replace`; directories are built as `{name}.tmp/` and renamed when complete.
Append-only JSONL logs are the one exception; their readers skip a torn last line.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def ensure_writable_dir(path: Path, key: str = "output") -> Path:
    """Create `path` if needed and prove it writable, before any heavy work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{key}: {path}", f"directory is not writable ({exc.strerror or exc})",
                        "choose another output location") from None
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` with `data` atomically. A failing disk (full, read-only, ...) leaves the old
    file untouched and becomes a `UserError` naming the file and the reason."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise UserError(str(path), f"cannot write ({exc.strerror or exc})",
                            "free disk space or choose a writable output location") from None
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, dumps_json(obj))


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    return write_text(path, lines)


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Append one complete JSON line (logs only); flushed so a kill loses at most this line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Records of a JSONL file; a truncated (unparsable) last line is ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UserError(str(path), f"line {i + 1}: not valid JSON")
    return out


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield `{path}.tmp/` to fill; rename it to `path` only when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _aside_name(path: Path) -> Path:
    return path.with_name(path.name + ".old.tmp")


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename the complete directory `src` to `dst`, replacing an existing `dst`.

    Deleting the old `dst` in place would leave a half-deleted (torn) directory if the process
    were killed; so the old one is first renamed aside to `{dst}.old.tmp`, the new one renamed in,
    and only then is the old one deleted. A kill between the two renames leaves the aside copy,
    which `clean_stale_temporaries` moves back.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists():
        aside = _aside_name(dst)
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(dst, aside)
        os.replace(src, dst)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dst)
    return dst


def _writer_alive(tmp: Path) -> bool:
    """Whether the process named by a `.x.tmp-PID` file still runs here (its write is in flight)."""
    pid = tmp.name.rsplit(".tmp-", 1)[1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:            # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove temporaries left by killed writers (`.x.tmp-PID` files of processes that no longer
    run, `x.tmp/` dirs); restore a directory that `replace_dir` had set aside when the final name
    is missing."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in sorted(directory.iterdir()):
        original = directory / p.name.removesuffix(".old.tmp")
        if p.name.endswith(".old.tmp") and p.is_dir() and not original.exists():
            os.replace(p, original)    # killed between the renames of `replace_dir`: restore the old one
        elif p.name.endswith(".tmp") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        elif p.name.startswith(".") and ".tmp-" in p.name and p.is_file() and not _writer_alive(p):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
