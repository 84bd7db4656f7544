"""Planned outputs and how they reach the disk (SPEC §2.4, §4.1 `on_exists`).

Every mode first builds all of its outputs in memory (`Output`), so that every check - including
the per-fact distractor guarantee - has passed before the first byte is written. Files are then
written atomically, and each dataset's manifest is updated once.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from ..atomicio import check_writable_dir, clean_stale_temporaries, dumps_json, write_many
from ..errors import UserError
from ..facts import Fact, facts_to_csv, norm, read_facts
from ..runinfo import sha256_file, sha256_text
from . import manifest


@dataclass
class Output:
    path: Path
    text: str
    relation_id: str | None = None          # set for fact files (recorded in the manifest)
    rows: int = 0
    notes: dict = field(default_factory=dict)

    @classmethod
    def facts(cls, path: Path, facts: list[Fact], notes: dict | None = None) -> "Output":
        return cls(Path(path), facts_to_csv(facts), facts[0].relation_id if facts else path.stem,
                   len(facts), dict(notes or {}))


def existing_facts(path: Path, on_exists: str, num_options: int, substring_rule: str = "warn") -> list[Fact]:
    """The facts already in `path` that an append must keep ([] when there is nothing to keep).

    With `on_exists: error` an existing file is an error naming it and the alternatives. Kept facts
    are read with the imported-data rule (a substring conflict among a fact's options warns): an
    import with `import.substring_rule: warn` may have written such facts, and the new facts are
    checked on their own.
    """
    path = Path(path)
    if not path.exists():
        return []
    if on_exists == "error":
        raise UserError(str(path), "already exists", "set on_exists=overwrite or on_exists=append")
    if on_exists == "overwrite":
        return []
    _check_recorded(path)
    return read_facts(path, num_options=num_options, substring_rule=substring_rule)


def _check_recorded(path: Path) -> None:
    """An append builds on the file its manifest describes. A run killed between renaming its fact
    files and its manifest left files already appended to: appending again would add a second batch."""
    entry = manifest.read(path.parent).get("files", {}).get(path.name)
    if entry and entry.get("sha256") != sha256_file(path):
        raise UserError(str(path), f"differs from its entry in {manifest.FILE} ({entry.get('rows')} facts recorded, "
                        "another sha256): a write was interrupted, or the file was edited since",
                        "check it, then append to the other relations alone or regenerate it with on_exists=overwrite")


def check_file_absent(path: Path, on_exists: str) -> None:
    """For non-fact outputs (prompt catalogues): only `error` protects an existing file."""
    if Path(path).exists() and on_exists == "error":
        raise UserError(str(path), "already exists", "set on_exists=overwrite")


def append(existing: list[Fact], new: list[Fact], where: str) -> list[Fact]:
    """`existing` then `new` (whose ids must follow); a Head repeated across them is an error."""
    heads = {norm(f.head): f.fact_id for f in existing}
    for f in new:
        if norm(f.head) in heads:
            raise UserError(where, f"Head {f.head!r} of new fact_id {f.fact_id} already exists "
                            f"(fact_id {heads[norm(f.head)]})", "duplicate Heads are rejected on append")
        heads[norm(f.head)] = f.fact_id
    return [*existing, *new]


def next_fact_id(existing: list[Fact]) -> int:
    return max((f.fact_id for f in existing), default=-1) + 1


def ensure_dirs(outputs: list[Output]) -> None:
    """Create and probe every target directory: the last check before anything is written."""
    for directory in sorted({o.path.parent for o in outputs}):
        check_writable_dir(directory, "output_dir")
        clean_stale_temporaries(directory)     # left by a killed earlier run (SPEC §2.4)


def write(outputs: list[Output], run: dict) -> list[Path]:
    """Write every output and the manifest of each dataset written to, as one `write_many`: all
    of them are staged before the first is renamed, so a full disk leaves no fact file without
    its manifest entry (and no file at all)."""
    ensure_dirs(outputs)
    by_dataset: dict[Path, dict[str, dict]] = {}
    for out in outputs:
        if out.relation_id is not None:
            by_dataset.setdefault(out.path.parent, {})[out.path.name] = {
                "relation_id": out.relation_id, "rows": out.rows, "sha256": sha256_text(out.text), **out.notes}
    with contextlib.ExitStack() as held:
        for directory in sorted(by_dataset):
            held.enter_context(manifest.locked(directory))
        items = [(o.path, o.text.encode("utf-8")) for o in outputs]
        items += [(directory / manifest.FILE, dumps_json(manifest.merged(directory, entries, run)).encode("utf-8"))
                  for directory, entries in sorted(by_dataset.items())]
        write_many(items)
    return [o.path for o in outputs]
