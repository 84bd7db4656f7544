"""Atomic file and directory writes: a final name never holds partial content.

Every staging name is unique to its writer: files go to `.{name}.tmp-{pid}-{random}-m{machine}` in
the same directory, are fsynced and renamed with `os.replace`; directories are built under such a
name and renamed when complete. A path that is a symbolic link is written through to its target
(the link stays). Cleanup after a killed writer removes only staging names of this machine whose
process is gone. Append-only JSONL logs are the one exception to atomic
writes; their readers skip a torn last line.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import textio
from .errors import UserError

# `.{final}.tmp-{pid}[-{random}][-m{machine}]` (a file or directory being built) or
# `.{final}.old-{pid}-{random}[-m{machine}]` (a replaced directory set aside until the new one is in
# place). Names without the machine tag were written by earlier versions.
_STAGING = re.compile(r"\.(?P<final>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-[0-9a-f]+)?(?:-m(?P<machine>[0-9a-f]{8}))?")


@functools.lru_cache(maxsize=None)
def machine_tag() -> str:
    """This host and pid namespace: a writer's pid means nothing on another node sharing the disk
    (a slurm cluster) or in another container, so only temporaries tagged here are judged by pid."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return hashlib.sha256(f"{socket.gethostname()}:{namespace}".encode()).hexdigest()[:8]


def _staging_name(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}-m{machine_tag()}")


def is_staging(name: str) -> bool:
    """Whether a file or directory name is a writer's temporary (never a final output)."""
    return bool(_STAGING.fullmatch(name))


def _target(path: str | os.PathLike) -> Path:
    """The file to replace: a symbolic link's target (so the link and other links to it stay)."""
    path = Path(path)
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if not target.exists():     # writing through it would create folders wherever it points
        raise UserError(str(path), f"is a symbolic link to {target}, which does not exist",
                        "remove the link, or create the file it points to")
    return target


def nearest_existing(path: str | os.PathLike) -> Path:
    """`path`, or the nearest of its parents that exists (where its missing folders would be made)."""
    path = Path(path)
    return next(p for p in (path, *path.parents) if p.exists())


def check_writable_dir(path: str | os.PathLike, key: str = "output") -> Path:
    """Prove, before any heavy work starts, that `path` can be created and written to.

    Nothing is left behind: the probe is a file in the nearest existing folder, removed again,
    and missing folders are created only when an output is actually written."""
    path = Path(path)
    existing = nearest_existing(path)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(0, f"{existing} is not a directory")
        probe = existing / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{key}: {path}", f"directory is not writable ({exc.strerror or exc})",
                        "choose another output location") from None
    return path


def check_writable_file(path: str | os.PathLike, key: str = "output") -> Path:
    """Prove that the file `path` can be replaced (written beside it, fsynced, removed again)."""
    target = _target(path)
    if target.is_dir():
        raise UserError(f"{key}: {path}", "is a directory, expected a file", "point it at a file")
    created: list[Path] = []
    try:
        created = make_parents(target)
        _stage(target, b"").unlink()
    except OSError as exc:
        raise UserError(f"{key}: {path}", f"cannot be written ({exc.strerror or exc})",
                        "make it writable or choose another location") from None
    finally:
        remove_empty(created)
    return Path(path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


# The hint follows the reason: "free disk space" misleads when a directory has the file's name.
_DISK_HINT = "free disk space or choose a writable output location"
_ACCESS_HINT = "make it writable or choose another output location"
_WRITE_HINTS = {errno.ENOSPC: _DISK_HINT, errno.EDQUOT: _DISK_HINT, errno.EROFS: _DISK_HINT,
                errno.EACCES: _ACCESS_HINT, errno.EPERM: _ACCESS_HINT,
                errno.EISDIR: "a directory has that name: move it away or choose another output file",
                errno.ENOTDIR: "a part of the path is a file, not a folder: choose another output location"}


def _write_error(path: Path, exc: OSError) -> UserError:
    return UserError(str(path), f"cannot write ({exc.strerror or exc})",
                     _WRITE_HINTS.get(exc.errno, "choose a writable output location"))


# A full or read-only disk, as the writers report it: an errno, or only a message (torch.save's zip
# writer and safetensors give no errno).
_FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
_WRITER_MESSAGES = ("PytorchStreamWriter", "inline_container", "unexpected pos", "iostream error",
                    "No space left on device", "Read-only file system")


def is_disk_failure(exc: BaseException) -> bool:
    if isinstance(exc, UserError):      # already explained by the writer that raised it
        return False
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in _FULL_OR_READ_ONLY
    return any(marker in str(exc) for marker in _WRITER_MESSAGES)


def disk_failure(path: Path, exc: BaseException, what: str = "", hint: str = _DISK_HINT) -> UserError:
    """The error of a large write that `is_disk_failure`, with the free space left where it went."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
    free = shutil.disk_usage(nearest_existing(path)).free / 2**30
    return UserError(str(path), f"cannot write{' ' + what if what else ''} ({reason}; {free:.1f} GiB free on its disk)",
                     hint)


def make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path`; returns them, outermost first."""
    missing = []
    parent = Path(path).parent
    while not parent.exists() and parent.parent != parent:
        missing.append(parent)
        parent = parent.parent
    missing.reverse()
    for folder in missing:
        folder.mkdir(exist_ok=True)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Undo `make_parents` after a failure: remove those folders that are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _stage(path: Path, data: bytes) -> Path:
    """`data` in a fresh, fsynced staging file beside `path` (removed again if that fails)."""
    tmp = _staging_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` with `data` atomically. A failing disk (full, read-only, ...) leaves the old
    file untouched and becomes a `UserError` naming the file and the reason."""
    return write_many([(path, data)])[0]


def write_many(items: list[tuple[str | os.PathLike, bytes]]) -> list[Path]:
    """Replace several files together: every one is staged (written and fsynced) before the first
    is renamed, so a full disk leaves all of them as they were, and no folder created for them
    remains. Renames need no space."""
    staged: list[tuple[Path, Path]] = []
    created: list[Path] = []
    current = Path(items[0][0]) if items else Path(".")
    try:
        for path, data in items:
            current = Path(path)
            target = _target(path)
            if target.is_dir():     # its rename would fail only after the files before it were replaced
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
            created += make_parents(target)
            staged.append((_stage(target, data), target))
        for tmp, target in staged:
            current = target
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        remove_empty(created)
        if isinstance(exc, OSError):
            raise _write_error(current, exc) from None
        raise
    return [Path(p) for p, _ in items]


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
    lines = textio.read_text(path).splitlines()
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


_MARK = ".mtg-staging"


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh staging directory to fill; it becomes `path` only when the block succeeds.

    Concurrent writers of one `path` never share a staging directory (pid + random in its name);
    the last complete one wins, and a reader sees one writer's complete directory, never a mix.
    A file (or link) at `path` is refused, not replaced: it is someone's, not an older result."""
    path = Path(path)
    _target(path)       # a dangling link is refused as for a file
    if path.exists() and not path.is_dir():
        raise UserError(str(path), "is a file, where a directory is to be written",
                        "move it away or choose another output location")
    tmp = _staging_name(path)
    created = make_parents(tmp)
    tmp.mkdir()
    mark = tmp / _MARK       # gone if the folder was removed meanwhile (a write made it again: same name)
    mark.touch()
    try:
        yield tmp
        try:
            mark.unlink()
        except FileNotFoundError:
            raise UserError(str(tmp), "this writer's staging directory was removed while it was being filled",
                            "run again; a cleanup on another machine sharing this disk may have removed it") from None
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        replace_dir(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(created)
        if is_disk_failure(exc):
            raise disk_failure(path, exc) from exc
        raise


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename the complete directory `src` to `dst`, replacing an existing `dst`.

    Deleting the old `dst` in place would leave a half-deleted (torn) directory if the process
    were killed; so the old one is first renamed aside to `.{dst}.old-{pid}-{random}`, the new one
    renamed in, and only then is the old one deleted; if the second rename fails (a full disk), the
    old one is renamed back. A kill between the two renames leaves the aside copy, which
    `clean_stale_temporaries` moves back. Another writer of `dst` may set it
    aside first, or rename its own in between our two renames: then we set that one aside too and
    rename again, so one complete directory stands and no aside copy stays behind.
    """
    src, dst = Path(src), Path(dst)
    while True:
        aside: Path | None = _staging_name(dst, "old")
        try:
            os.replace(dst, aside)
        except FileNotFoundError:       # no dst, or another writer set it aside first
            aside = None
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                _discard(aside)
                continue                # another writer's dst came in between: set it aside too
            if aside is not None:       # the new one is not in place (a full disk): the old one goes back
                with contextlib.suppress(OSError):   # else clean_stale_temporaries moves it back later
                    os.replace(aside, dst)
            raise
        _discard(aside)
        return dst


def _discard(aside: Path | None) -> None:
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether process `pid` still runs on this machine (this process counts as gone: a
    temporary of our own pid was left by an earlier process that had the same pid)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:            # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the staging files and directories of writers on this machine that no longer run; a
    directory that `replace_dir` had set aside is moved back when its final name is missing.
    Temporaries of running writers, and of writers on other machines, are left alone."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in sorted(directory.iterdir()):
        match = _STAGING.fullmatch(p.name)
        if not match or match["machine"] not in (None, machine_tag()) or _process_alive(int(match["pid"])):
            continue
        final = directory / match["final"]
        if match["kind"] == "old" and p.is_dir() and not final.exists():
            os.replace(p, final)    # killed between the renames of `replace_dir`: restore the old one
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
    return removed
