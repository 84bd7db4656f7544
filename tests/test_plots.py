"""Figures a reader reads at a glance: short model labels with a key, one metric per axis, a colour
bar per colour scale, axis labels, titles that fit the figure."""
from __future__ import annotations

import numpy as np
import pytest

from util_public import plotting, representation_plots
from util_public.artifacts import ModelRecord, ResultSummary
from util_public.evaluation import report

LONG = "phase1-624b57d157_checkpoint-140_50_sync_random_o_opt20_hgp-0_o_bs10_lr3e-05_cosine_ep3_f0-49_seed42_checkpoint-15"


@pytest.fixture
def drawn(monkeypatch):
    """Every Figure saved during the test, inspected before it is closed."""
    figures = []
    save = plotting.Figure.save

    def inspect(self, path):
        figures.append(self)
        self.fig.canvas.draw()
        _check_layout(self)
        return save(self, path)
    monkeypatch.setattr(plotting.Figure, "save", inspect)
    return figures


def _check_layout(figure) -> None:
    renderer = figure.fig.canvas.get_renderer()
    width_px = figure.fig.get_figwidth() * figure.fig.dpi
    title = figure.fig._suptitle
    if title is not None:
        box = title.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width_px, "the title is wider than the figure"
    for ax in figure.fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() or ax.get_xticklabels(), "an axis without a label"
        assert ax.get_ylabel(), "an axis without a label"


def _summary(task, model, ptype, metrics, relation="50"):
    return ResultSummary(task=task, model=ModelRecord(model), prompt_type=ptype, relation_id=relation, dataset="d",
                         test_type="close", metrics=metrics)


def test_summary_chart_one_metric_per_panel_short_labels(drawn, tmp_path):
    summaries = [_summary("mc", LONG, "hgp-0", {"all": {"n": 8, "accuracy": 0.5}, "unseen": {"n": 4, "accuracy": 0.25}}),
                 _summary("mc", "qwen", "test-0", {"all": {"n": 8, "accuracy": 0.75}}, relation="71"),
                 _summary("gen", LONG, "hgp-0", {"all": {"n": 8, "contains": 0.125}})]
    report.bar_chart(summaries, tmp_path / "chart.png")
    [figure] = drawn
    panels = [ax for ax in figure.fig.axes if ax.get_label() != "<colorbar>"]
    assert sorted(ax.get_ylabel() for ax in panels) == ["MC accuracy", "generation: contains gold"]
    ticks = [t.get_text() for ax in panels for t in ax.get_xticklabels()]
    assert LONG not in "".join(ticks) and all(t.split("\n")[0] in ("M1", "M2") for t in ticks)
    assert LONG in "".join(line.strip() for line in figure.key)      # the key names it, wrapped to fit
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_heatmap_has_a_colour_bar_per_metric_and_pca_named_axes(drawn, tmp_path):
    names = ["smollm2-135m", LONG]
    metrics = ["dcos", "cos_key_hgp-0", "cos_key_test-*"]
    per_layer = {n: {m: list(np.linspace(0, 1, 7)) for m in metrics} for n in names}
    labels = plotting.short_labels(names)
    representation_plots.heatmap(tmp_path / "heatmap.png", per_layer, labels)
    keys = {n: {r: np.random.default_rng(0).normal(size=(4, 8)) for r in ("50", "71")} for n in names}
    representation_plots.pca(tmp_path / "pca.png", keys, labels)
    heat, pca = drawn
    assert sum(ax.get_label() == "<colorbar>" for ax in heat.fig.axes) == len(metrics)
    assert [t.get_text() for t in heat.fig.axes[0].get_yticklabels()] == ["M1", "M2"]
    assert all(ax.get_xlabel().startswith("PC1 (") and ax.get_ylabel().startswith("PC2 (") for ax in pca.fig.axes)
    assert [ax.get_title() for ax in pca.fig.axes] == ["M1", "M2"]


def test_key_lines_wrap_to_the_figure():
    lines = plotting.key_lines({LONG: "M1"}, width_in=4.0)
    assert len(lines) > 1 and all(len(line) * plotting.CHAR_IN <= 4.0 for line in lines)
    assert "".join(line.strip() for line in lines) == f"M1 = {LONG}"
