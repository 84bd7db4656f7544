"""One tidy CSV of every evaluation under a results root (`python recipes/collect.py ROOT --out sweep.csv`).

A row is one (result, slice): the model's lineage, the evaluation's coordinates and its metrics.
MC and generation results of the same coordinates (fact range included) share a row (generation
columns are empty when it was not run); of two results of one task at the same coordinates (a rerun
with other settings into the same root) the newer is kept, with a warning naming both. Everything
comes from the stored files, so a table can be rebuilt at any time:

- `summary.json` of each concrete result (aggregates such as `test-all` and multi-relation
  macro means are skipped: they are group-bys of these rows) and its `config.yaml` (language);
- the evaluated checkpoint's run `manifest.json` (seed, tokens trained, and the Phase-1
  checkpoint a Phase-2 run started from);
- the nearest `recipe.json` above the result (experiment id and the training label).

`stderr` is the binomial standard error of the MC accuracy, sqrt(acc (1 - acc) / n).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from .. import atomicio, filecache, prompts, textio
from ..artifacts import MANIFEST_FILE, ModelRecord, ResultSummary, RunManifest, current, find_summaries, none_found
from ..errors import UserError, exit_on_user_error

KEYS = ["experiment", "label", "model", "base_model", "stage", "phase1_text_type", "phase1_epochs",
        "phase2_text_type", "phase2_epoch", "k", "step", "learning_rate", "seed", "loss_mode", "legacy_loss", "relation", "dataset",
        "facts", "language", "prompt_type", "prompt_family", "test_type", "open_content", "slice"]
MC = ["n", "accuracy", "stderr", "prob_mass", "acc_norm", "acc_calibrated", "gold_prob_raw", "mean_gold_rank", "n_ties", "asked_type_wins",
      "asked_type_wins_norm"]
GEN = ["gen_n", "exact", "prefix", "contains", "emission"]
EXTRA = ["tokens_trained", "label_tokens_trained"]
COLUMNS = KEYS + MC + GEN + EXTRA
COUNTS = ["n", "n_ties", "gen_n", *EXTRA]
# Row order: by experiment and training label, then epochs, k and steps as numbers, then the prompt.
ORDER = ["experiment", "label", "relation", "dataset", "facts", "language", "phase1_epochs", "k", "phase2_epoch", "step",
         "seed", "test_type", "prompt_type", "slice", "model"]
NUMERIC_KEYS = {"phase1_epochs", "k", "step", "phase2_epoch", "seed"}


@filecache.per_content
def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return textio.read_json(path)


def recipe_json(path: Path) -> dict | None:
    """A recipe.json (None when there is none), its experiment and models checked."""
    found = _json(path)
    if found is None:
        return None
    return textio.require_fields(found, {"experiment": (str, type(None)), "models": (dict, type(None))}, str(path))


def _recipe(directory: Path) -> dict:
    for folder in [directory, *directory.parents]:
        found = recipe_json(folder / "recipe.json")
        if found is not None:
            return found
    return {}


@filecache.per_content
def _manifest(path: Path) -> RunManifest:
    """A run manifest (an empty one when there is none)."""
    return RunManifest.read(path) if path.is_file() else RunManifest()


def lineage(model: ModelRecord) -> dict:
    """Stage, epochs, k, seed and tokens of an evaluated model, from its mtg_meta and run manifest."""
    meta = model.mtg_meta
    if meta is None:
        return {"stage": "base", "base_model": model.name, "phase1_epochs": 0}
    manifest = _manifest(Path(model.path or "").parent / MANIFEST_FILE)
    train = manifest.hashed_config.get("train") or {}
    out = {"seed": train.get("seed"), "learning_rate": train.get("learning_rate"), "step": meta.step,
           "loss_mode": meta.loss_mode, "legacy_loss": meta.legacy_loss}
    if meta.epoch is not None and manifest.tokens_trained is not None:
        out["tokens_trained"] = manifest.tokens_trained.per_epoch * meta.epoch
        labels = manifest.label_tokens_trained
        out["label_tokens_trained"] = labels.per_epoch * meta.epoch if labels is not None else None
    if meta.phase == 1:
        return {**out, "stage": "phase1", "base_model": meta.base_model,
                "phase1_text_type": meta.train_text_type, "phase1_epochs": meta.epoch}
    parent = manifest.base_model.meta
    out.update({"phase2_text_type": meta.train_text_type, "phase2_epoch": meta.epoch, "k": meta.k})
    if parent is None:     # Phase 2 straight from a base model: the SFT baseline
        return {**out, "stage": "sft", "base_model": meta.base_model, "phase1_epochs": 0}
    return {**out, "stage": "phase2", "base_model": parent.base_model,
            "phase1_text_type": parent.train_text_type, "phase1_epochs": parent.epoch}


def _language(directory: Path) -> str | None:
    config = directory / "config.yaml"
    if not config.is_file():
        return None
    none = type(None)
    data = textio.require_fields(textio.read_yaml(config, (dict, none)) or {}, {"data": (dict, none)}, str(config))
    language = textio.require_fields(data.get("data") or {}, {"language": (str, none)}, f"{config}: data")
    return language.get("language")


def rows(summary: ResultSummary, directory: Path) -> list[dict]:
    """The tidy rows (one per slice) of one concrete result summary."""
    model = summary.model
    recipe = _recipe(directory)
    base = {"experiment": recipe.get("experiment"), "label": (recipe.get("models") or {}).get(model.name),
            "model": model.name, "relation": summary.relation_id, "dataset": summary.dataset,
            "facts": f"{summary.fact_range.begin}-{summary.fact_range.end - 1}", "language": _language(directory), "prompt_type": summary.prompt_type,
            "prompt_family": prompts.parse(summary.prompt_type).group, "test_type": summary.test_type,
            "open_content": summary.open_content, **lineage(model)}
    out = []
    for slice_, m in summary.metrics.items():
        row = {**base, "slice": slice_}
        if summary.task == "mc":
            row.update({k: m.get(k) for k in MC if k != "stderr"})
            acc, n = m.get("accuracy"), m.get("n") or 0
            row["stderr"] = math.sqrt(acc * (1 - acc) / n) if acc is not None and n else None
        else:
            row.update({"gen_n": m.get("n"), **{k: m.get(k) for k in GEN[1:]}})
        out.append(row)
    return out


def summaries(root: Path, only: set[Path] | None = None):
    """(summary, directory) of every current concrete mc/gen result under `root` (temporaries
    skipped; `artifacts.current`: one per task and coordinates, all of them on the same questions);
    with `only`, just the results in those directories (a recipe's own evaluations)."""
    found = [(path, summary) for path, summary in find_summaries(root)
             if only is None or path.parent.resolve() in only]
    for path, summary in current(found):
        if summary.task in ("mc", "gen") and summary.is_fact_result:
            yield summary, path.parent


def table(root: str | Path, only: set[Path] | None = None) -> pd.DataFrame:
    """All rows under `root` (or those in `only`), MC and generation merged on the coordinates, in a
    stable order."""
    found = {"mc": [], "gen": []}
    for summary, directory in summaries(Path(root), only):
        found[summary.task] += rows(summary, directory)
    frames = []
    for task, cols in (("mc", MC), ("gen", GEN)):
        for row in found[task]:   # keys as text, missing ones empty: they must still match across tasks
            row.update({k: "" if row.get(k) is None else str(row[k]) for k in KEYS})
        frames.append(pd.DataFrame(found[task], columns=KEYS + cols + EXTRA))
    mc, gen = frames
    merged = mc.merge(gen, on=KEYS, how="outer", suffixes=("", "_gen"))
    for col in EXTRA:   # the lineage columns of generation-only rows come from the generation side
        merged[col] = pd.to_numeric(merged[col]).fillna(pd.to_numeric(merged.pop(f"{col}_gen")))
    for col in COUNTS:
        merged[col] = merged[col].astype("Int64")
    numeric = lambda col: pd.to_numeric(col, errors="coerce") if col.name in NUMERIC_KEYS else col  # noqa: E731
    return merged[COLUMNS].sort_values(ORDER, key=numeric, kind="stable").reset_index(drop=True)


def write_csv(root: str | Path, out: str | Path, only: set[Path] | None = None) -> Path:
    """Write the tidy table of `root` (or of the results in `only`) to `out` atomically; returns the
    path. A root without any evaluation is refused, as `evaluation/summarize.py` refuses it (it
    wrote a header-only table)."""
    df = table(root, only)
    if df.empty:
        raise none_found(str(root))
    return atomicio.write_text(out, df.to_csv(index=False))


def collect(root: Path, out: Path) -> Path:
    """`write_csv` for the command line: the root must be a folder and `out` writable before any reading."""
    if not root.is_dir():
        raise UserError(str(root), "no such results directory", "name a results root (evaluation/test_result/...)")
    atomicio.check_writable_file(out, "--out")
    return write_csv(root, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Collect evaluation summaries into one tidy CSV.")
    parser.add_argument("root", help="a results root (e.g. evaluation/test_result/recipes/E1)")
    parser.add_argument("--out", default=None, help="CSV path (default: ROOT/sweep.csv)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    print(exit_on_user_error(lambda: collect(root, Path(args.out) if args.out else root / "sweep.csv")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
