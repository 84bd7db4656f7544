"""The loss-curve PNG of a run, drawn from its metrics.jsonl (matplotlib, Agg backend)."""
from __future__ import annotations

import io
from pathlib import Path

from .. import atomicio


def plot(metrics_path: Path, out_path: Path, title: str) -> Path | None:
    """Step losses and per-epoch means against the optimizer step; None when nothing was logged."""
    if not metrics_path.is_file():
        return None
    records = atomicio.read_jsonl(metrics_path)
    steps = [(r["step"], r["loss"]) for r in records if r.get("type") == "step"]
    epochs = [(r["step"], r["mean_loss"]) for r in records if r.get("type") == "epoch" and r.get("mean_loss") is not None]
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*steps), lw=0.8, alpha=0.6, label="step loss")
    if epochs:
        ax.plot(*zip(*epochs), "o-", lw=1.5, label="epoch mean")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title[:90], fontsize=8)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomicio.write_bytes(out_path, buf.getvalue())
