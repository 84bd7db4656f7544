"""The representation analysis' figures (`evaluation/represent.py`), following `plotting`:

- `heatmap.png`: one panel per metric (its own colour bar and scale), models (M1, M2, ...) down,
  layers across;
- `pca.png`: per model, the last-layer hidden states at the key token projected on their first two
  principal components (axes: PC1 and PC2 with the share of variance each explains), by relation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plotting import Figure


def describe(metric: str) -> str:
    """What a per-layer metric of `representation.metrics` measures, as a panel title."""
    if metric == "dcos":
        return "Δcos: mean cosine of key states within a relation minus across relations"
    family = metric.removeprefix("cos_key_")
    return f"cos(key state, {family} prompt state), mean over facts and templates"


def heatmap(path: Path, per_layer: dict[str, dict[str, list[float]]], labels: dict[str, str]) -> Path:
    """`per_layer`: model -> metric -> value per layer (layer 0: the embedding output)."""
    models = list(per_layer)
    metrics = list(dict.fromkeys(m for values in per_layer.values() for m in values))
    layers = max(len(v) for values in per_layer.values() for v in values.values())
    fig = Figure(len(metrics), 1, (max(6.5, 0.3 * layers + 3.0), 0.35 * len(models) + 1.6), labels)
    from matplotlib.ticker import MaxNLocator     # matplotlib only when a figure is drawn
    for ax, metric in zip(fig.axes[:, 0], metrics):
        grid = np.full((len(models), layers), np.nan)
        for row, model in enumerate(models):
            values = per_layer[model].get(metric, [])
            grid[row, :len(values)] = values
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.fig.colorbar(image, ax=ax, label="Δcos" if metric == "dcos" else "cosine", pad=0.01)
        ax.set_yticks(range(len(models)), [labels[m] for m in models])
        ax.set_ylabel("model")
        ax.set_xlabel("layer (0 = embedding output)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(describe(metric), fontsize=9)
    fig.title("Representation analysis: per-layer metrics of each model")
    return fig.save(path)


def _pca(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates on the first two components, share of variance each explains)."""
    centred = states - states.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2
    share = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centred @ vt[:2].T, share


def pca(path: Path, keys: dict[str, dict[str, np.ndarray]], labels: dict[str, str]) -> Path:
    """`keys`: model -> relation -> [facts, hidden] last-layer key states."""
    fig = Figure(1, len(keys), (4.3, 4.3), labels)
    for ax, (model, by_relation) in zip(fig.axes[0], keys.items()):
        coords, share = _pca(np.concatenate(list(by_relation.values())))
        start = 0
        for relation, states in by_relation.items():
            ax.scatter(*coords[start:start + len(states)].T, s=10, label=relation)
            start += len(states)
        ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({share[1]:.0%} of variance)")
        ax.set_title(labels[model], fontsize=10)
        ax.legend(title="relation", fontsize=7, title_fontsize=7)
    fig.title("Last-layer hidden state at the key token, first two principal components per model")
    return fig.save(path)
