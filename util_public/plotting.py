"""The conventions every figure of the project follows, so each reads at a glance:

- models carry short labels (M1, M2, ...) on axes and legends; a key printed under the plot, and
  on the console by the script that draws it, maps each label to the full name;
- one metric per axis, its name on the axis; a colour scale always has its colour bar;
- titles and key lines are wrapped to the figure's width, never cut off;
- a figure is rendered in memory and written atomically (no torn PNG after a kill).
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

from . import atomicio

KEY_FONT = 7                    # points
_LINE_IN = 0.17                 # inches per key line at KEY_FONT
CHAR_IN = 0.062                # inches per monospace character at KEY_FONT
_TITLE_PAD_IN = 0.15            # inches above and below a figure title
DPI = 110


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def short_labels(names: list[str], prefix: str = "M") -> dict[str, str]:
    """{name: "M1", ...} in the given order (each distinct name once)."""
    return {name: f"{prefix}{i}" for i, name in enumerate(dict.fromkeys(names), start=1)}


def key_lines(labels: dict[str, str], width_in: float) -> list[str]:
    """`M1 = full name` lines, wrapped to `width_in` inches."""
    chars = max(20, int(width_in / CHAR_IN) - 2)
    out = []
    for name, label in labels.items():
        out += textwrap.wrap(f"{label} = {name}", chars, subsequent_indent=" " * (len(label) + 3),
                             break_long_words=True, break_on_hyphens=False)
    return out


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points."""
    chars = max(20, int(width_in / (CHAR_IN * fontsize / KEY_FONT)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False))


def save_png(fig, path: str | Path) -> Path:
    """Render `fig` in memory, close it and write the PNG atomically; returns its path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    pyplot().close(fig)
    return atomicio.write_bytes(path, buf.getvalue())


def title(fig, text: str, width_in: float, fontsize: float = 10, left_in: float = 0.0) -> float:
    """`fig`'s title wrapped to `width_in` inches (centred over them, from `left_in`) at the top;
    returns the height in inches of its band, which the panels must leave free."""
    wrapped = wrap(text, width_in, fontsize)
    fig_w, fig_h = fig.get_size_inches()
    fig.suptitle(wrapped, fontsize=fontsize, x=(left_in + width_in / 2) / fig_w, y=1 - _TITLE_PAD_IN / 2 / fig_h,
                 va="top")
    return _TITLE_PAD_IN + (wrapped.count("\n") + 1) * 1.5 * fontsize / 72


class Figure:
    """A grid of panels with room below for a model key: `Figure(rows, cols, (w, h), labels)`."""

    def __init__(self, rows: int, cols: int, panel_in: tuple[float, float], labels: dict[str, str] | None = None):
        plt = pyplot()
        width = cols * panel_in[0]
        self.key = key_lines(labels, width) if labels else []
        self.key_in = _LINE_IN * (len(self.key) + 1) if self.key else 0.0
        height = rows * panel_in[1] + self.key_in
        self.fig, self.axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
        self.width_in, self.height_in = width, height
        self.title_in = 0.0

    def title(self, text: str, fontsize: float = 10) -> None:
        self.title_in = title(self.fig, text, self.width_in, fontsize)

    def save(self, path: str | Path) -> Path:
        """Lay out (the key under the panels), render and write the PNG atomically; returns its path."""
        bottom = self.key_in / self.height_in
        if self.key:
            self.fig.text(0.01, bottom - 0.5 * _LINE_IN / self.height_in, "\n".join(self.key), ha="left",
                          va="top", fontsize=KEY_FONT, family="monospace")
        self.fig.tight_layout(rect=(0, bottom, 1, 1 - self.title_in / self.height_in))
        return save_png(self.fig, path)
