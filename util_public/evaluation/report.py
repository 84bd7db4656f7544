"""Reading result summaries back: a text table (prompt type x slice) and a PNG bar chart.

`python evaluation/summarize.py <results root or result dirs>` prints the table; `--png` also
draws the chart. The headline metric is accuracy for MC, `contains` for generation (the figure
comparable with the original) and `avg_loss` for the loss probe; `--metric` picks another.
"""
from __future__ import annotations

from pathlib import Path

from .. import artifacts, plotting
from ..artifacts import ResultSummary
from ..errors import UserError

HEADLINE = {"mc": "accuracy", "gen": "contains", "loss": "avg_loss", "ppl": "perplexity"}
AXIS = {("mc", "accuracy"): "MC accuracy", ("mc", "acc_calibrated"): "MC accuracy, calibrated",
        ("gen", "contains"): "generation: contains gold",
        ("gen", "prefix"): "generation: starts with gold", ("gen", "exact"): "generation: exact",
        ("loss", "avg_loss"): "loss probe: mean loss (nats)", ("ppl", "perplexity"): "text perplexity"}
SLICES = ("all", "seen", "unseen")
SLICE_COLOURS = {"all": "tab:blue", "seen": "tab:orange", "unseen": "tab:green"}
MAX_WIDTH_IN = 24.0      # a wider chart continues a panel on the next row


def result_line(summary: ResultSummary, directory: Path) -> str:
    metric = HEADLINE[summary.task]
    value = summary.metric("all", metric)
    shown = "n/a" if value is None else f"{value:.4f}"
    about = (f"text {summary.dataset}" if summary.task == "ppl"
             else f"{summary.prompt_type} relation {summary.relation_id}")
    return f"{summary.task} {about}: {metric}={shown} (n={summary.metric('all', 'n')}) -> {directory}"


def find_summaries(paths: list[str | Path]) -> list[ResultSummary]:
    """The current evaluation summaries under each of the given roots, result directories or files
    (`artifacts.current`: per root, the newest result per task and coordinates)."""
    return [summary for root in paths for _, summary in artifacts.current(list(artifacts.find_summaries(root)))]


def _value(summary: ResultSummary, slice_: str, metric: str) -> tuple[float | None, float | None]:
    """(value, sd): aggregate summaries store {mean, sd} where results store a number."""
    v = summary.metric(slice_, metric)
    if isinstance(v, dict):
        return v.get("mean"), v.get("sd")
    return v, None


def rows(summaries: list[ResultSummary], metric: str | None = None) -> list[dict]:
    out = []
    for s in summaries:
        name = metric or HEADLINE.get(s.task, "accuracy")
        row = {"task": s.task, "model": s.model.name, "relation": s.relation_id, "dataset": s.dataset,
               "facts": f"{s.fact_range.begin}-{s.fact_range.end - 1}" if s.fact_range else "",
               "prompt_type": _prompt_label(s), "test_type": s.test_type, "metric": name}
        for slice_ in SLICES:
            row[slice_] = _value(s, slice_, name)
            row[f"n_{slice_}"] = s.metric(slice_, "n")
        out.append(row)
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in ("task", "model", "dataset", "relation", "facts",
                                                                 "test_type", "prompt_type")))


def _prompt_label(s: ResultSummary) -> str:
    """The prompt type; a family aggregate says over how many prompts (`test-all` may be a subset)."""
    return f"{s.prompt_type} ({len(s.per_member)} prompts)" if s.family and s.per_member else str(s.prompt_type)


def _cell(value: tuple[float | None, float | None]) -> str:
    v, sd = value
    if v is None:
        return "-"
    return f"{v:.3f}±{sd:.3f}" if sd is not None else f"{v:.3f}"


def _rows_with_values(summaries: list[ResultSummary], metric: str | None, purpose: str) -> list[dict]:
    """The rows that have a value of `metric` (else the headline metric); none is an error naming
    the metrics these results do have (a misspelt `--metric` printed a table of dashes, exit 0)."""
    found = [r for r in rows(summaries, metric) if any(r[s][0] is not None for s in SLICES)]
    if not found:
        present = sorted({m for s in summaries for values in s.metrics.values() if isinstance(values, dict)
                          for m in values if m != "n"})
        raise UserError("--metric" if metric else "--png", f"no result has {metric or 'its headline metric'} to "
                        f"{purpose}", f"metrics of these results: {', '.join(present) or 'none'}")
    return found


def table(summaries: list[ResultSummary], metric: str | None = None) -> str:
    """A fixed-width table: one row per result, the headline metric per slice (a result without
    `metric`, an MC result beside `--metric prefix`, shows "-"; none with it is an error)."""
    if metric:
        _rows_with_values(summaries, metric, "show")
    head = ["task", "model", "dataset", "relation", "facts", "test_type", "prompt_type", "metric", *SLICES, "n"]
    body = [[str(r["task"]), str(r["model"]), str(r["dataset"]), str(r["relation"]), r["facts"], str(r["test_type"]),
             str(r["prompt_type"]), r["metric"], *(_cell(r[s]) for s in SLICES), str(r["n_all"])]
            for r in rows(summaries, metric)]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [head, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def axis_label(task: str, metric: str) -> str:
    """The y-axis name of one panel: the task and its metric."""
    return AXIS.get((task, metric), f"{task}: {metric}")


def _tick(row: dict, label: str, varies: set[str]) -> str:
    """A bar group's tick: the model's short label, the prompt type (a text for ppl), and the
    relation and dataset where they differ within the panel."""
    parts = [label, str(row["prompt_type"] if row["prompt_type"] is not None else row["dataset"])]
    if "relation" in varies:
        parts.append(f"rel. {row['relation']}")      # not "r105": that is 105's reversed relation
    if "dataset" in varies and row["prompt_type"] is not None:
        parts.append(str(row["dataset"]))
    return "\n".join(parts)


def bar_chart(summaries: list[ResultSummary], png: str | Path, metric: str | None = None) -> Path:
    """One panel per (task, metric), a bar group per result (model as M1, M2, ...: the key under the
    panels names them), one bar per slice present, with the standard deviation of aggregates. A panel
    with more groups than fit MAX_WIDTH_IN continues on the next rows, on the same y-range. Results
    without the metric (`--metric prefix` beside MC results) are left out, as the table shows them
    as "-"; none with it is an error."""
    table_rows = _rows_with_values(summaries, metric, "chart")
    labels = plotting.short_labels(sorted({str(r["model"]) for r in table_rows}))
    panels: dict[tuple, list[dict]] = {}
    for r in table_rows:
        panels.setdefault((r["task"], r["metric"]), []).append(r)
    ticks = {key: _ticks(members, labels) for key, members in panels.items()}
    group_in = max(0.75, plotting.CHAR_IN * max(len(line) for t in ticks.values() for tick in t for line in tick.split("\n")))
    per_row = max(1, int((MAX_WIDTH_IN - 2.0) / group_in))
    chunks = [(key, i, i + per_row) for key, members in panels.items() for i in range(0, len(members), per_row)]
    widest = max(len(panels[key][begin:end]) for key, begin, end in chunks)
    fig = plotting.Figure(len(chunks), 1, (max(6.5, group_in * widest + 2.0), 3.2), labels)
    axes_of: dict[tuple, list] = {}
    for ax, (key, begin, end) in zip(fig.axes[:, 0], chunks):
        _bars(ax, panels[key][begin:end], ticks[key][begin:end], widest)
        ax.set_ylabel(axis_label(*key), fontsize=8)
        axes_of.setdefault(key, []).append(ax)
    for same in axes_of.values():     # the rows of one panel share its y-range
        low, high = min(ax.get_ylim()[0] for ax in same), max(ax.get_ylim()[1] for ax in same)
        for ax in same:
            ax.set_ylim(low, high)
    fig.title(f"Evaluation results ({len(table_rows)} results; error bars: sd over an aggregate's members)")
    return fig.save(png)


def _bars(ax, members: list[dict], ticks: list[str], slots: int) -> None:
    """A bar group per result, one bar per slice present; `slots` groups wide (rows align)."""
    import numpy as np

    present = [s for s in SLICES if any(m[s][0] is not None for m in members)]
    width = 0.8 / len(present)
    x = np.arange(len(members))
    for k, slice_ in enumerate(present):
        vals = [m[slice_][0] if m[slice_][0] is not None else np.nan for m in members]
        sds = [m[slice_][1] or 0.0 for m in members]
        ax.bar(x + (k - (len(present) - 1) / 2) * width, vals, width, yerr=sds, label=slice_, capsize=2,
               color=SLICE_COLOURS[slice_])
    ax.set_xticks(x, ticks, fontsize=7)
    ax.set_xlim(-0.6, slots - 0.4)
    ax.legend(title="slice", fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _ticks(members: list[dict], labels: dict[str, str]) -> list[str]:
    varies = {k for k in ("relation", "dataset") if len({str(m[k]) for m in members}) > 1}
    return [_tick(m, labels[str(m["model"])], varies) for m in members]
