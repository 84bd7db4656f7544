"""Figures over a recipe's tidy sweep table (`sweep.csv`, util_public/recipes/collect.py).

    python -m util_public.recipes.plots dose SWEEP_CSV [--out PNG]

`dose` (recipe E16): generalization and specificity on the unseen facts against the number of
Phase-2 optimizer steps (0 = the Phase-1 model), one column of panels per learning rate; the top
row is multiple-choice accuracy, the bottom row greedy generation (`contains`), each with binomial
standard errors. Under the unrelated prompts `contains` is the rate at which the memorized object
is emitted for a question about something else: a specific model keeps it low. The locality
control (the trained relation's real facts, `dataset=known`) is drawn beside them, with the base
model's value as a dashed line.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from .. import plotting
from ..errors import UserError, exit_on_user_error

# (legend label, prompt family): a family's evaluated prompts are averaged into one curve
CURVES = (("train prompt (hgp-0)", "hgp"), ("held-out paraphrase (test-*)", "test"),
          ("unrelated (unrelated-*)", "unrelated"), ("real facts (locality)", "locality"))
ROWS = (("accuracy", "multiple-choice accuracy"), ("contains", "generation: object in the output"))
LOCALITY_DATASET = "known"
SWEEP_COLUMNS = {"stage", "step", "slice", "dataset", "relation", "prompt_family", "learning_rate", "accuracy",
                 "contains", "n", "gen_n"}


def _locality_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The known-fact rows of the relations the fictional facts were evaluated on, as family `locality`."""
    fictional = set(df.loc[df.dataset != LOCALITY_DATASET, "relation"].astype(str))
    known = df[(df.dataset == LOCALITY_DATASET) & df.relation.astype(str).isin(fictional) & (df.slice == "all")]
    return known.assign(prompt_family="locality")


def dose_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (learning rate, steps, family, metric): the mean rate and its n.

    Fictional facts count on the unseen slice only; the locality family is the trained relation's
    real facts. The Phase-1 model (stage `phase1`) is the zero-step point of every learning rate."""
    rows = pd.concat([df[(df.slice == "unseen") & (df.dataset != LOCALITY_DATASET)], _locality_rows(df)])
    unseen = rows[rows.stage.isin(["phase1", "phase2"])].copy()
    unseen["steps"] = unseen.step.where(unseen.stage == "phase2", 0).astype(int)
    rates = sorted(unseen.loc[unseen.stage == "phase2", "learning_rate"].dropna().unique())
    phase1 = unseen[unseen.stage == "phase1"]
    parts = [unseen[unseen.stage == "phase2"]] + [phase1.assign(learning_rate=lr) for lr in rates]
    both = pd.concat(parts, ignore_index=True)
    out = []
    for metric, n_col in (("accuracy", "n"), ("contains", "gen_n")):
        grouped = both.dropna(subset=[metric]).groupby(["learning_rate", "steps", "prompt_family"])
        for (lr, steps, family), g in grouped:
            out.append({"learning_rate": lr, "steps": steps, "family": family, "metric": metric,
                        "value": g[metric].mean(), "n": int(g[n_col].iloc[0])})
    return pd.DataFrame(out)


def base_locality(df: pd.DataFrame) -> dict[str, float]:
    """metric -> the base model's locality value (the level training should keep)."""
    locality = _locality_rows(df)
    base = locality[locality.stage == "base"]
    return {m: base[m].mean() for m in ("accuracy", "contains") if base[m].notna().any()}


def plot_dose(df: pd.DataFrame, path: Path, title: str = "") -> Path:
    plt = plotting.pyplot()
    points = dose_points(df)
    base = base_locality(df)
    rates = sorted(points.learning_rate.unique())
    steps = sorted(points.steps.unique())
    width = 4.2 * len(rates) + 1.5
    fig, axes = plt.subplots(len(ROWS), len(rates), figsize=(width, 6.2), sharex=True,
                             sharey=True, squeeze=False)
    for col, lr in enumerate(rates):
        for row, (metric, ylabel) in enumerate(ROWS):
            ax = axes[row][col]
            for label, family in CURVES:
                sel = points[(points.learning_rate == lr) & (points.metric == metric) & (points.family == family)]
                sel = sel.sort_values("steps")
                if sel.empty:
                    continue
                xs = [steps.index(s) for s in sel.steps]
                err = [math.sqrt(v * (1 - v) / n) if n else 0 for v, n in zip(sel.value, sel.n)]
                ax.errorbar(xs, sel.value, yerr=err, marker="o", capsize=3, label=label)
            if metric in base:
                ax.axhline(base[metric], color="grey", linestyle="--", linewidth=1, label="base model (locality)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"Phase-2 learning rate {lr:g}", fontsize=10)
            if row == len(ROWS) - 1:
                ax.set_xticks(range(len(steps)), [str(s) for s in steps])
                ax.set_xlabel("Phase-2 optimizer steps (0 = Phase 1 only)")
            if col == 0:
                ax.set_ylabel(ylabel, fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    title_in = plotting.title(fig, title, width) if title else 0.0
    fig.tight_layout(rect=(0, 0.06, 1, 1 - title_in / 6.2))
    return plotting.save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Figures over a recipe's sweep.csv.")
    parser.add_argument("kind", choices=["dose"])
    parser.add_argument("sweep", help="a sweep.csv written by util_public.recipes.collect")
    parser.add_argument("--out", default=None, help="PNG path (default: next to the CSV, dose.png)")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep)
    df = read_sweep(sweep)
    if df[df.stage == "phase2"].step.isna().all():
        raise UserError(str(sweep), "no Phase-2 rows with a step column", "recollect with recipes/collect.py")
    out = plot_dose(df, Path(args.out) if args.out else sweep.with_name("dose.png"), args.title)
    print(f"wrote {out}")
    return 0


def read_sweep(path: Path) -> pd.DataFrame:
    """A sweep table with the columns the figures read (an empty file or another table was a
    pandas traceback)."""
    if not path.is_file():
        raise UserError(str(path), "no such sweep table", "run the recipe (or recipes/collect.py) first")
    try:
        df = pd.read_csv(path, dtype={"relation": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(str(path), f"not a sweep table ({str(exc).splitlines()[0]})",
                        "pass a sweep.csv written by util_public.recipes.collect") from None
    missing = sorted(SWEEP_COLUMNS - set(df.columns))
    if missing:
        raise UserError(str(path), f"not a sweep table: no column {', '.join(missing)}",
                        "pass a sweep.csv written by util_public.recipes.collect")
    return df


if __name__ == "__main__":
    exit_on_user_error(main)
