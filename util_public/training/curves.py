"""The loss-curve PNG of a run, drawn from its metrics.jsonl (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

from .. import atomicio, plotting


def plot(metrics_path: Path, out_path: Path, title: str) -> Path | None:
    """Step losses and per-epoch means against the optimizer step; None when nothing was logged."""
    if not metrics_path.is_file():
        return None
    records = atomicio.read_jsonl(metrics_path)
    steps = [(r["step"], r["loss"]) for r in records if r.get("type") == "step"]
    epochs = [(r["step"], r["mean_loss"]) for r in records if r.get("type") == "epoch" and r.get("mean_loss") is not None]
    if not steps:
        return None
    fig = plotting.Figure(1, 1, (7, 4))
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator     # matplotlib only when a figure is drawn
    ax = fig.axes[0, 0]
    ax.plot(*zip(*steps), lw=0.8, alpha=0.6, label="step loss")
    if epochs:
        ax.plot(*zip(*epochs), "o-", lw=1.5, label="epoch mean")
    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("training loss (log scale)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))     # 0.5, 1, 2 rather than 5e-1, 10^0
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_title(plotting.wrap(title, 6.5, 8), fontsize=8)
    ax.legend()
    return fig.save(out_path)
