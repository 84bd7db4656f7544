"""`summary.json` of an evaluation result: what was evaluated and its metrics per slice.

Evaluation writes one per result directory (`kind: result`, with `fact_range`), per prompt family
(`{family}-all`, with `family` and `per_member`) and per group of relations (`a+b`, with
`per_member`); the cache check, `evaluation/summarize.py`, the recipe collector and the demo read
them. Keys of one kind only (`family`, `text`, `fact_range`, `per_member`, the model's `path`) are
left out of the others; the rest is always written (null where it does not apply). `metrics` maps a slice (`all`, `seen`, `unseen`) to its metrics: numbers in a result,
`{values, mean, sd[, micro]}` (counts: `{values, total}`) in an aggregate.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from .. import atomicio, textio
from ..errors import UserError
from .checkpoint import CheckpointMeta
from .versioned import Artifact, optional

SUMMARY_FILE = "summary.json"
READ_HINT = "rerun the evaluation that wrote it (output.overwrite=true)"


@dataclass
class ModelRecord(Artifact):
    """The evaluated model: its registry name, directory and (our checkpoints) metadata."""
    name: Optional[str] = None
    path: Optional[str] = optional()
    mtg_meta: Optional[CheckpointMeta] = None


@dataclass
class FactRange(Artifact):
    begin: int = 0
    end: int = 0          # exclusive


@dataclass
class ResultSummary(Artifact):
    SCHEMA = "mtg.eval"
    VERSION = 1

    task: Optional[str] = None
    config_hash: Optional[str] = None
    git: Any = None
    created: Optional[str] = None
    # The latest evaluation that asked for this result and found it stored (a cache hit): tables show,
    # per coordinates, the result used last, not the one written last (`current`).
    used: Optional[str] = optional()
    machine: Optional[dict] = optional()             # where it was computed (runinfo.machine)
    model: ModelRecord = field(default_factory=ModelRecord)
    family: Optional[str] = optional()              # `{family}-all` aggregates
    prompt_type: Optional[str] = None
    test_type: Optional[str] = None
    open_content: Optional[str] = None
    dataset: Optional[str] = None
    relation_id: Optional[str] = None
    text: Optional[dict] = optional()               # ppl: the scored text
    fact_range: Optional[FactRange] = optional()    # results over facts (not aggregates)
    seen_fact_ids: Optional[list[int]] = None
    backend: Optional[dict] = None
    data_fingerprint: Optional[dict] = None
    add_bos_train: Optional[bool] = None
    add_bos_eval: Optional[bool] = None
    per_member: Optional[dict] = optional()         # aggregates: member -> its metrics
    metrics: dict[str, dict] = field(default_factory=dict)
    # Fact results: one hash of the questions asked (each context, and the facts without their
    # distractors, which only multiple choice scores). The mc, gen and loss results of one prompt
    # agree on it; an edited template or fact changes it.
    questions_sha256: Optional[str] = optional()

    @classmethod
    def read(cls, path, hint: str | None = READ_HINT) -> ResultSummary:
        return super().read(path, hint)

    @property
    def is_fact_result(self) -> bool:
        """A concrete result over a slice of facts (not an aggregate, not a text probe)."""
        return self.fact_range is not None

    @property
    def last_used(self) -> str:
        return self.used or self.created or ""

    def metric(self, slice_: str, name: str) -> Any:
        return (self.metrics.get(slice_) or {}).get(name)

    def coordinates(self) -> tuple:
        """What the result is about, whatever the task: model, prompt, data and facts."""
        facts = (self.fact_range.begin, self.fact_range.end) if self.fact_range else None
        return (self.model.name, self.prompt_type, self.test_type, self.open_content, self.dataset,
                self.relation_id, facts)


def find(root: str | Path) -> Iterator[tuple[Path, ResultSummary]]:
    """(path, summary) of every evaluation `summary.json` at or below `root`, in path order.
    Writers' temporaries are skipped, and so are other stages' files of that name below a root
    (a representation run's `mtg.repr` summaries: its default `output_dir` is under the results
    root); a file given as `root` itself must be an evaluation summary."""
    root = Path(root)
    for path in [root] if root.is_file() else _summary_files(root):
        data = _read_settled(path)
        if data is None:
            continue
        kind = str(data.get("schema", "")).partition("/")[0]
        if path != root and kind.startswith("mtg.") and kind != ResultSummary.SCHEMA:
            continue
        yield path, ResultSummary.from_json(data, str(path))


def _summary_files(root: Path) -> list[Path]:
    """Every `summary.json` below `root`, writers' temporaries pruned: a walk into one that its writer
    renames or removes meanwhile failed (an evaluation writing under the root a table reads)."""
    found = []
    for folder, dirs, files in os.walk(root):      # a vanished folder is passed over; links are not followed
        dirs[:] = [d for d in dirs if not atomicio.is_staging(d)]
        if SUMMARY_FILE in files:
            found.append(Path(folder) / SUMMARY_FILE)
    return sorted(found)


def _read_settled(path: Path) -> dict | None:
    """The summary at `path`; a result a writer replaces at this moment is between its two renames
    for an instant, so a failed read is tried again, and a file that stays gone is passed over."""
    for attempt in range(3):
        try:
            return textio.read_json(path, dict, READ_HINT)
        except UserError:
            if attempt == 2:
                if path.exists():
                    raise
                return None
            time.sleep(0.2)


def current(found: list[tuple[Path, ResultSummary]]) -> list[tuple[Path, ResultSummary]]:
    """The results one table shows, in path order: per experiment (the folder of the nearest
    `recipe.json`: recipes evaluate the same models apart), task and coordinates the one written or
    reused last (two would be indistinguishable rows; the older is named: after a template was
    edited and edited back, the first result, reused, is the current one), and only results that
    asked the questions that one asked (after a template was edited and mc rerun, the old gen
    result would be read as the new prompt's; it is named and left out)."""
    newest: dict[tuple, tuple[Path, ResultSummary]] = {}
    experiment = {path: _experiment(path) for path, _ in found}
    for path, summary in sorted(found, key=lambda f: f[1].last_used):
        # an aggregate records no fact range; its directory name starts with the slice (f2-3-<hash>)
        facts = None if summary.fact_range else path.parent.name.rsplit("-", 1)[0]
        key = (experiment[path], summary.task, *summary.coordinates(), facts)
        if key in newest:
            print(f"warning: {summary.task} results {newest[key][0].parent} and {path.parent} share their coordinates "
                  "(other settings, same root): the newer one is kept", file=sys.stderr)
        newest[key] = (path, summary)
    questions = {}
    for path, summary in sorted(newest.values(), key=lambda f: f[1].last_used):
        if summary.questions_sha256:
            questions[experiment[path], summary.coordinates()] = summary.questions_sha256
    kept = []
    for path, summary in newest.values():
        latest = questions.get((experiment[path], summary.coordinates()))
        if summary.questions_sha256 and latest and summary.questions_sha256 != latest:
            print(f"warning: {summary.task} result {path.parent} scored other questions than the newest result "
                  f"of {summary.prompt_type} (its template or facts changed since): left out; evaluate "
                  f"tasks=[{summary.task}] again", file=sys.stderr)
            continue
        kept.append((path, summary))
    return sorted(kept, key=lambda f: f[0])


def _experiment(path: Path) -> Path | None:
    """The folder of the nearest `recipe.json` above a result (None outside recipes)."""
    return next((folder for folder in Path(path).parents if (folder / "recipe.json").is_file()), None)


def none_found(where: str) -> UserError:
    """The refusal of a root without any evaluation summary (summarize.py, the recipe collector): an
    empty table would hide a mistyped root."""
    return UserError(where, "no evaluation summary.json found",
                     "evaluate first (evaluation/eval.py), or name a results root or result directory")
