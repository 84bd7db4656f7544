"""The dataset manifest `{data_root}/{dataset}/manifest.json` (SPEC §3.1, schema `mtg.dataset/1`).

It lists every fact file of the dataset with its sha256, row count and relation_id, and for each
file the run that produced it: mode, seed, resolved config, package versions, git state, creation
time and (for LLM generation) the cache path. Only the creation time and git state vary between
two identical runs. Updates are read-modify-write under a lock (`locked`, then `merged`), so runs
writing different relations of one dataset keep each other's entries; the caller writes the
merged manifest together with the fact files it describes (`atomicio.write_many`).
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path

from .. import runinfo, textio
from ..errors import UserError
from ..locking import exclusive
from ..runinfo import sha256_text

SCHEMA = "mtg.dataset/1"
FILE = "manifest.json"


def producer(mode: str, seed: int, config: dict, llm_cache: str | None) -> dict:
    """What produced this run's files (shared by all files written by one run)."""
    return {"mode": mode, "seed": seed, "config": config, "llm_cache": llm_cache,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git": runinfo.git_info(), "packages": runinfo.package_versions()}


def read(dataset_dir: Path) -> dict:
    """A dataset's manifest ({} when there is none or it is not one)."""
    return _read(Path(dataset_dir) / FILE)


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = textio.read_json(path, dict)
    except UserError as err:
        print(f"warning: {err.where}: unreadable manifest replaced ({err.problem})", file=sys.stderr)
        return {}
    return data if data.get("schema") == SCHEMA else {}


def locked(dataset_dir: Path):
    """The dataset's manifest lock, held from reading the manifest to writing the new one."""
    return exclusive(Path(dataset_dir) / f".{FILE}.lock", timeout_s=120)


def merged(dataset_dir: Path, entries: dict[str, dict], run: dict) -> dict:
    """The manifest with `entries` ({file name: {relation_id, rows, sha256, ...}}) recorded as
    produced by `run` (call under `locked`; the files of `entries` may not be written yet).

    Runs are stored once under `runs` (keyed by a hash of everything but the time and git state)
    and referenced by each file; entries of files that no longer exist, and runs no file
    references, are dropped.
    """
    stable = {k: v for k, v in run.items() if k not in ("created_at", "git")}
    run_id = sha256_text(json.dumps(stable, sort_keys=True, ensure_ascii=False))[:16]
    current = _read(Path(dataset_dir) / FILE)
    files, runs = current.get("files", {}), current.get("runs", {})
    for name, entry in entries.items():
        files[name] = {**entry, "run": run_id}
    runs[run_id] = run
    files = {name: entry for name, entry in files.items() if name in entries or (Path(dataset_dir) / name).is_file()}
    runs = {rid: r for rid, r in runs.items() if any(e.get("run") == rid for e in files.values())}
    return {"schema": SCHEMA, "dataset": Path(dataset_dir).name, "files": files, "runs": runs}
