"""The demo's table and figure: which evaluation each column comes from, as Markdown and a PNG.

A column reads one metric of one slice from the summaries of one source:
- `facts`: the demo's fictional facts (memorization, generalization, and the generation-based
  specificity probe: the memorized object emitted under an unrelated prompt);
- `known`: the catalogue's real facts of one relation (locality, `data.dataset=known`);
- `known-untrained`: the same questions with no trained object among their options
  (`data.avoid_objects_of`): what the model still knows, without its pull towards memorized answers;
- `text`: the general-text perplexity (locality, `tasks=[ppl]`);
- `pooled`: cross-relation multiple choice on the unseen facts (specificity, `mc.pool_relations`).
Columns of several prompts (a prompt group) or relations show their mean. Two tables: the paper's
memorize/generalize columns, then locality and specificity; the figure has one panel per kind of
number (rates on the fictional facts, rates of the probes, perplexity), one metric per axis.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import NamedTuple

from . import plotting

ROWS = ("base", "phase 1", "phase 1 + phase 2", "phase 2 only")
PROBES = ("known", "text", "emission", "cross")


class Column(NamedTuple):
    name: str
    source: str                 # facts | known | known-untrained | text | pooled
    group: str                  # the prompt group the values come from (demo.prompt_groups)
    task: str
    slice: str
    metric: str
    relation: str | None = None     # known facts: that relation; otherwise the mean over the demo's relations
    part: str = "memorize"          # memorize | probes: which table and panel


COLUMNS = (   # memorize and generalize (the paper's measurements)
    Column("key acc (all)", "facts", "key", "mc", "all", "accuracy"),
    Column("train acc (seen)", "facts", "train", "mc", "seen", "accuracy"),
    Column("train acc (unseen)", "facts", "train", "mc", "unseen", "accuracy"),
    Column("train gen prefix (unseen)", "facts", "train", "gen", "unseen", "prefix"),
    Column("test acc (unseen)", "facts", "test", "mc", "unseen", "accuracy"),
    Column("unrelated acc (unseen)", "facts", "unrelated", "mc", "unseen", "accuracy"),
    Column("unrelated gold_prob_raw (unseen)", "facts", "unrelated", "mc", "unseen", "gold_prob_raw"),
)
HEADINGS = {"memorize": "Memorization and generalization (fictional facts)",
            "probes": "Locality (real facts, general text) and specificity (fictional facts)"}


def probe_columns(probes: list[str], known_relations: list[str], trained: list[str]) -> list[Column]:
    """The locality and specificity columns of the chosen probes; a `trained` relation's known facts
    are also asked with no trained object among the options (`data.avoid_objects_of`)."""
    out: list[Column] = []
    if "known" in probes:
        for r in known_relations:
            out.append(Column(f"known acc (r{r})", "known", "known", "mc", "all", "accuracy", r, "probes"))
            if r in trained:
                out.append(Column(f"known acc, no trained options (r{r})", "known-untrained", "known", "mc", "all",
                                  "accuracy", r, "probes"))
            out.append(Column(f"known gen prefix (r{r})", "known", "known", "gen", "all", "prefix", r, "probes"))
    if "text" in probes:
        out.append(Column("text perplexity", "text", "text", "ppl", "all", "perplexity", None, "probes"))
    if "emission" in probes:
        out += [Column("train emission (unseen)", "facts", "train", "gen", "unseen", "emission", None, "probes"),
                Column("unrelated gen prefix (unseen)", "facts", "unrelated", "gen", "unseen", "prefix", None, "probes"),
                Column("unrelated emission (unseen)", "facts", "unrelated", "gen", "unseen", "emission", None,
                       "probes")]
    if "cross" in probes:      # per-character scores: options of different relations differ in length (pooling)
        out += [Column("cross own acc_norm (unseen)", "pooled", "own", "mc", "unseen", "acc_norm", None, "probes"),
                Column("cross memorized wins_norm (unseen)", "pooled", "borrowed", "mc", "unseen", "acc_norm", None,
                       "probes"),
                Column("cross asked-type wins_norm (unseen)", "pooled", "borrowed", "mc", "unseen",
                       "asked_type_wins_norm", None, "probes"),
                # the cross-key probe: B's key token after A's subject (n/a unless the model learned B's key)
                Column("cross-key memorized wins_norm (unseen)", "pooled", "borrowed-key", "mc", "unseen", "acc_norm",
                       None, "probes"),
                Column("cross-key asked-type wins_norm (unseen)", "pooled", "borrowed-key", "mc", "unseen",
                       "asked_type_wins_norm", None, "probes")]
    return out


def values(found: dict, groups: dict[str, list[str]], columns: list[Column], relation_ids: list[str]) -> dict:
    """{column: mean value or None}; `found` maps (source, relation, task, prompt, slice, metric) to values."""
    row = {}
    for c in columns:
        rels = [c.relation] if c.relation else [None] if c.source == "text" else relation_ids
        xs = [v for r in rels for p in groups.get(c.group, [])
              for v in found.get((c.source, r, c.task, p, c.slice, c.metric), []) if v is not None]
        row[c.name] = sum(xs) / len(xs) if xs else None
    return row


def _cell(value, metric: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if metric == "perplexity" else f"{value:.3g}" if metric == "gold_prob_raw" else f"{value:.2f}"


def render_table(rows: dict[str, dict], columns: list[Column]) -> str:
    """Markdown: one table per part (memorize, probes), one line per model, n/a where a value does not exist."""
    blocks = []
    for part, heading in HEADINGS.items():
        cols = [c for c in columns if c.part == part]
        if not cols:
            continue
        lines = [f"**{heading}**", "", "| model | " + " | ".join(c.name for c in cols) + " |",
                 "|" + "---|" * (len(cols) + 1)]
        lines += [f"| {label} | " + " | ".join(_cell(row.get(c.name), c.metric) for c in cols) + " |"
                  for label, row in rows.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def plot(rows: dict[str, dict], columns: list[Column], title: str, path: Path, chance: float) -> None:
    """Grouped bars, one bar per model: a panel of fictional-fact rates, one of probe rates, one of
    perplexity (each axis one kind of number); a dashed line marks the MC chance level."""
    plt = plotting.pyplot()
    rates = lambda part: [c for c in columns if c.part == part and c.metric not in ("gold_prob_raw", "perplexity")]  # noqa: E731
    panels = [(HEADINGS["memorize"], rates("memorize"), "accuracy / rate"),
              ("Locality and specificity probes", rates("probes"), "accuracy / rate"),
              ("General-text perplexity", [c for c in columns if c.metric == "perplexity"], "perplexity (lower is better)")]
    panels = [p for p in panels if p[1]]
    widths = [max(1.6, 1.1 * len(cols)) for _, cols, _ in panels]
    width = sum(widths) + 2.5
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 5.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (heading, cols, ylabel) in zip(axes[0], panels):
        _bars(ax, rows, cols)
        ax.set_title(textwrap.fill(heading, 40), fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        if ylabel.startswith("accuracy"):
            ax.set_ylim(0, 1.05)
            ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label=f"MC chance (1/{round(1 / chance)})")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right")
    title_in = plotting.title(fig, title, width - 1.6)       # beside the legend's column, not under it
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / width, 1 - title_in / 5.2))
    plotting.save_png(fig, path)


def _bars(ax, rows: dict[str, dict], cols: list) -> None:
    width = 0.8 / len(rows)
    for i, (label, row) in enumerate(rows.items()):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(cols))]
        bars = ax.bar(xs, [row.get(c.name) or 0.0 for c in cols], width, label=label)
        for bar, c in zip(bars, cols):
            if row.get(c.name) is None:
                ax.text(bar.get_x() + bar.get_width() / 2, 0.01, "n/a", ha="center", va="bottom", fontsize=7,
                        rotation=90, transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([textwrap.fill(c.name, 14) for c in cols], fontsize=7)
