"""Result directories (SPEC §3.6): layout, config hash, atomic writes and cache reuse.

`{root}/{task}/{prompt_type}/{model}/{dataset}/{relation_id}/{test_type}[-{open_content}]/{slice}-{hash8}/`
holds `records.jsonl`, `summary.json` (`artifacts.ResultSummary`), `config.yaml` and optionally
`legacy.json`. The directory is built in a staging directory of its own and renamed when
complete, so a final name never holds a partial result. One process at a time computes a result
(`writer_lock`: a second one stops with "already running"). A directory whose summary carries the
same full config hash is reused unless `output.overwrite`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np

from .. import atomicio, locking, paths, runinfo
from ..artifacts import SUMMARY_FILE, ResultSummary
from ..errors import UserError


def config_hash(payload: dict) -> str:
    """The result hash: `runinfo.config_hash` in the form result directories are named by."""
    return runinfo.config_hash(payload, runinfo.SPACED)


def slice_name(begin: int, last: int) -> str:
    return f"f{begin}-{last}"


def test_dir(test_type: str, open_content: str | None) -> str:
    return f"{test_type}-{open_content}" if test_type == "open" else test_type


def result_dir(root: Path, task: str, prompt_type: str, model_name: str, dataset: str, relation_id: str,
               test_type: str, open_content: str | None, slice_: str, full_hash: str) -> Path:
    return paths.below(root, (task, "task"), (prompt_type, "prompt type"), (model_name, "model name"),
                       (dataset, "data.dataset"), (relation_id, "relation id"),
                       (test_dir(test_type, open_content), "prompt.test_type"), (f"{slice_}-{full_hash[:8]}", "slice"))


def text_result_dir(root: Path, task: str, text_name: str, model_name: str, full_hash: str) -> Path:
    """`{root}/ppl/{text}/{model}/text-{hash8}`: a text probe has no prompt, relation or fact slice."""
    return paths.below(root, (task, "task"), (text_name, "ppl.text"), (model_name, "model name"),
                       (f"text-{full_hash[:8]}", "slice"))


def writer_lock(directory: Path):
    """Held while a result directory is computed and written (a sibling `.{name}.lock`)."""
    directory = Path(directory)
    return locking.sole_writer(directory.with_name(f".{directory.name}.lock"), directory)


def cached_summary(directory: Path, full_hash: str) -> ResultSummary | None:
    """The stored summary when `directory` already holds this exact evaluation (a damaged one
    does not count: the result is computed again and replaces it)."""
    path = Path(directory) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = ResultSummary.read(path)
    except UserError:
        return None
    return summary if summary.config_hash == full_hash else None


def now() -> str:
    """In microseconds: `artifacts.current` keeps the newest of two results by this stamp, and two
    evaluations in one process finish within a second (ISO strings still sort in time order, an
    older stamp in seconds before a newer one with a fraction)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def mark_used(directory: Path, summary: ResultSummary) -> ResultSummary:
    """A stored result reused now (`ResultSummary.used`, rewritten atomically)."""
    summary = dataclasses.replace(summary, used=now())
    summary.write(Path(directory) / SUMMARY_FILE)
    return summary


def new_summary(task: str, full_hash: str, **fields) -> ResultSummary:
    """A summary written now, from this checkout (git state, machine and time recorded)."""
    return ResultSummary(task=task, config_hash=full_hash, git=runinfo.git_info(), created=now(),
                         machine=runinfo.machine(), **fields)


def write_result(directory: Path, records: list[dict], summary: dict, config_yaml: str,
                 legacy: dict | None = None) -> Path:
    """Write one complete result directory atomically (replacing an older one); `summary` is a
    `ResultSummary.to_json()` (tests write others)."""
    with atomicio.atomic_dir(directory) as tmp:
        atomicio.write_jsonl(tmp / "records.jsonl", records)
        atomicio.write_text(tmp / "config.yaml", config_yaml)
        if legacy is not None:
            atomicio.write_json(tmp / "legacy.json", legacy)
        atomicio.write_json(tmp / SUMMARY_FILE, summary)
    return Path(directory)


def write_summary_only(directory: Path, summary: ResultSummary) -> Path:
    """Aggregate summaries (family-all, multi-relation): one summary.json, atomically."""
    with atomicio.atomic_dir(directory) as tmp:
        summary.write(tmp / SUMMARY_FILE)
    return Path(directory)


def legacy_layout(task: str, records: list[dict], metrics: dict) -> dict:
    """The original's result JSON (`output.write_legacy_json`), from the same records."""
    if task == "mc":
        probs = []
        for r in records:
            s = np.array(r["option_logprobs"], dtype=np.float64)
            probs.append(np.exp(s - np.logaddexp.reduce(s)).tolist())
        return {"base_prompts": [r["context"] for r in records],
                "post_processed_outputs": [r["option_logprobs"] for r in records],
                "post_processed_outputs_normalized": probs,
                "accuracy": metrics["all"]["accuracy"], "prob_mass": metrics["all"]["prob_mass"]}
    if task == "gen":
        return {"base_prompts": [r["prompt"] for r in records], "outputs": [r["response"] for r in records],
                "generation_acc": metrics["all"]["contains"]}
    return {}
