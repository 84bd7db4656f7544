"""Reading result summaries back: a text table (prompt type x slice) and a PNG bar chart.

`python evaluation/summarize.py <results root or result dirs>` prints the table; `--png` also
draws the chart. The headline metric is accuracy for MC, `contains` for generation (the figure
comparable with the original) and `avg_loss` for the loss probe; `--metric` picks another.
"""
from __future__ import annotations

import io
from pathlib import Path

from .. import atomicio
from .results import read_summary

HEADLINE = {"mc": "accuracy", "gen": "contains", "loss": "avg_loss", "ppl": "perplexity"}
SLICES = ("all", "seen", "unseen")


def result_line(summary: dict, directory: Path) -> str:
    m = summary["metrics"].get("all", {})
    metric = HEADLINE[summary["task"]]
    value = m.get(metric)
    shown = "n/a" if value is None else f"{value:.4f}"
    about = (f"text {summary['dataset']}" if summary["task"] == "ppl"
             else f"{summary['prompt_type']} relation {summary['relation_id']}")
    return f"{summary['task']} {about}: {metric}={shown} (n={m.get('n')}) -> {directory}"


def find_summaries(paths: list[str | Path]) -> list[dict]:
    """Every summary.json under the given roots or result directories (temporaries skipped)."""
    found = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("summary.json"))
        for f in files:
            if any(atomicio.is_staging(part) for part in f.parts):
                continue
            summary = read_summary(f)
            summary.setdefault("directory", str(f.parent))
            found.append(summary)
    return found


def _value(summary: dict, slice_: str, metric: str) -> tuple[float | None, float | None]:
    """(value, sd): aggregate summaries store {mean, sd} where results store a number."""
    v = summary.get("metrics", {}).get(slice_, {}).get(metric)
    if isinstance(v, dict):
        return v.get("mean"), v.get("sd")
    return v, None


def rows(summaries: list[dict], metric: str | None = None) -> list[dict]:
    out = []
    for s in summaries:
        name = metric or HEADLINE.get(s.get("task"), "accuracy")
        row = {"task": s.get("task"), "model": (s.get("model") or {}).get("name"), "relation": s.get("relation_id"),
               "dataset": s.get("dataset"), "prompt_type": s.get("prompt_type"), "test_type": s.get("test_type"),
               "metric": name}
        for slice_ in SLICES:
            row[slice_] = _value(s, slice_, name)
            row[f"n_{slice_}"] = (s.get("metrics", {}).get(slice_) or {}).get("n")
        out.append(row)
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in ("task", "model", "dataset", "relation",
                                                                 "test_type", "prompt_type")))


def _cell(value: tuple[float | None, float | None]) -> str:
    v, sd = value
    if v is None:
        return "-"
    return f"{v:.3f}±{sd:.3f}" if sd is not None else f"{v:.3f}"


def table(summaries: list[dict], metric: str | None = None) -> str:
    """A fixed-width table: one row per result, the headline metric per slice."""
    head = ["task", "model", "dataset", "relation", "test_type", "prompt_type", "metric", *SLICES, "n"]
    body = [[str(r["task"]), str(r["model"]), str(r["dataset"]), str(r["relation"]), str(r["test_type"]),
             str(r["prompt_type"]), r["metric"], *(_cell(r[s]) for s in SLICES), str(r["n_all"])]
            for r in rows(summaries, metric)]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [head, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def bar_chart(summaries: list[dict], png: str | Path, metric: str | None = None) -> Path:
    """Grouped bars (one group per result row, one bar per slice) saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    table_rows = rows(summaries, metric)
    labels = [f"{r['model']}\n{r['relation']} {r['prompt_type']}\n{r['task']}:{r['metric']}" for r in table_rows]
    x = np.arange(len(table_rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table_rows) + 2), 4.8))
    width = 0.8 / len(SLICES)
    for k, slice_ in enumerate(SLICES):
        vals = [r[slice_][0] if r[slice_][0] is not None else np.nan for r in table_rows]
        sds = [r[slice_][1] or 0.0 for r in table_rows]
        ax.bar(x + (k - 1) * width, vals, width, yerr=sds, label=slice_, capsize=2)
    ax.set_xticks(x, labels, fontsize=7, rotation=0)
    ax.set_ylabel(metric or "headline metric")
    ax.legend(title="slice")
    ax.set_title("Evaluation results")
    fig.tight_layout()
    buf = io.BytesIO()   # rendered in memory, then written atomically (no torn PNG on a kill)
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomicio.write_bytes(png, buf.getvalue())
