"""Figures a reader reads at a glance: short model labels with a key, one metric per axis, a colour
bar per colour scale, axis labels, titles that fit the figure."""
from __future__ import annotations

import numpy as np
import pytest

from util_public import demo_report, plotting, representation_plots
from util_public.artifacts import ModelRecord, ResultSummary
from util_public.errors import UserError
from util_public.evaluation import report
from util_public.training import curves

LONG = "phase1-624b57d157_checkpoint-140_50_sync_random_o_opt20_hgp-0_o_bs10_lr3e-05_cosine_ep3_f0-49_seed42_checkpoint-15"


@pytest.fixture
def drawn(monkeypatch):
    """Every Figure saved during the test; each PNG the project writes is inspected as laid out,
    just before it is rendered (Figure.save lays out, then writes through plotting.save_png)."""
    figures = []
    save, write = plotting.Figure.save, plotting.save_png

    def record(self, path):
        figures.append(self)
        return save(self, path)

    def inspect(fig, path):
        fig.canvas.draw()
        _check_layout(fig)
        return write(fig, path)
    monkeypatch.setattr(plotting.Figure, "save", record)
    monkeypatch.setattr(plotting, "save_png", inspect)
    return figures


def _check_layout(fig) -> None:
    renderer = fig.canvas.get_renderer()
    width_px = fig.get_figwidth() * fig.dpi
    title = fig._suptitle
    if title is not None:
        box = title.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width_px, "the title is wider than the figure"
        assert all(box.y0 >= ax.get_tightbbox(renderer).y1 for ax in fig.axes), "the title overlaps a panel"
        assert not any(box.overlaps(legend.get_window_extent(renderer)) for legend in fig.legends), \
            "the title overlaps the legend"
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        tick_texts = [t.get_text() for t in ax.get_xticklabels() if t.get_text().strip()]
        assert ax.get_xlabel().strip() or tick_texts, "an x axis without a label or labelled ticks"
        assert ax.get_ylabel().strip(), "a y axis without a label"
        ticks = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()), key=lambda b: b.x0)
        assert all(a.x1 <= b.x0 for a, b in zip(ticks, ticks[1:])), "tick labels overlap"
        if ax.get_xlabel().startswith(("layer", "optimizer step")):
            assert all(float(t.get_text().replace("\u2212", "-")).is_integer() for t in ax.get_xticklabels()
                       if t.get_text()), "a fractional step or layer"


def _summary(task, model, ptype, metrics, relation="50", dataset="d"):
    return ResultSummary(task=task, model=ModelRecord(model), prompt_type=ptype, relation_id=relation, dataset=dataset,
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


def test_summary_chart_leaves_out_results_without_the_metric(drawn, tmp_path):
    """`summarize.py --metric prefix --png` beside MC results divided by zero (a panel of no bars)."""
    summaries = [_summary("mc", "m", "hgp-0", {"all": {"n": 8, "accuracy": 0.5}}),
                 _summary("gen", "m", "hgp-0", {"all": {"n": 8, "prefix": 0.25}, "unseen": {"n": 4, "prefix": 0.5}})]
    report.bar_chart(summaries, tmp_path / "chart.png", "prefix")
    [figure] = drawn
    assert [ax.get_ylabel() for ax in figure.fig.axes] == [report.axis_label("gen", "prefix")]
    with pytest.raises(UserError, match="--metric: no result has contains to chart; metrics of these results: "
                                        "accuracy, prefix"):
        report.bar_chart(summaries, tmp_path / "none.png", "contains")
    assert not (tmp_path / "none.png").exists()


def test_summary_chart_names_relation_105_apart_from_its_reversal_r105(drawn, tmp_path):
    summaries = [_summary("mc", "m", "hgp-0", {"all": {"n": 8, "accuracy": 0.5}}, relation=rel)
                 for rel in ("105", "r105")]
    report.bar_chart(summaries, tmp_path / "chart.png")
    [figure] = drawn
    ticks = [t.get_text().split("\n") for ax in figure.fig.axes for t in ax.get_xticklabels()]
    assert sorted(t[-1] for t in ticks) == ["rel. 105", "rel. r105"]


def test_summary_chart_continues_a_crowded_panel_on_further_rows(drawn, tmp_path):
    """80 results with long dataset names: the MC panel wraps onto rows no wider than the limit, all
    on one y-range, and no tick label runs into the next (checked in _check_layout)."""
    summaries = [_summary("mc", f"model-{m}", f"test-{p}", {"all": {"n": 8, "accuracy": (m + p) / 23}},
                          dataset=f"sync_random_o_opt20.pool-{p}") for m in range(4) for p in range(20)]
    report.bar_chart(summaries, tmp_path / "chart.png")
    [figure] = drawn
    panels = [ax for ax in figure.fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) > 1 and {ax.get_ylabel() for ax in panels} == {"MC accuracy"}
    assert figure.width_in <= report.MAX_WIDTH_IN and len({ax.get_ylim() for ax in panels}) == 1
    assert sum(len(ax.get_xticklabels()) for ax in panels) == 80


def test_loss_curve_has_whole_steps_and_plain_loss_ticks(drawn, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(f'{{"type": "step", "step": {i}, "loss": {3.0 / i}}}\n' for i in range(1, 5)))
    curves.plot(metrics, tmp_path / "loss.png", LONG)
    [figure] = drawn
    ax = figure.fig.axes[0]
    assert ax.get_xlabel() == "optimizer step" and "loss" in ax.get_ylabel()
    assert not any("^" in t.get_text() for t in ax.get_yticklabels(which="both"))     # 0.8, 1, 2: no 10^x


def test_heatmap_has_a_colour_bar_per_metric_and_pca_named_axes(drawn, tmp_path):
    names = ["smollm2-135m", LONG]
    metrics = ["dcos", "cos_key_hgp-0", "cos_key_test-*"]
    per_layer = {n: {m: list(np.linspace(0, 1, 3)) for m in metrics} for n in names}   # 3 layers: whole ticks only
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


@pytest.mark.parametrize("probes", [[], ["known", "text", "emission", "cross"]])
def test_demo_figure_fits_a_long_title_and_every_probe_column(drawn, tmp_path, probes):
    cols = [*demo_report.COLUMNS, *demo_report.probe_columns(probes, ["50", "71"], ["50"])]
    rows = {label: {c.name: (None if c.name.startswith("cross-key") else 0.5) for c in cols}
            for label in ("base", "phase 1", "phase 1 + phase 2", "phase 2 only")}
    title = f"{LONG}: relations 12+21+50+71+105 (mean over relations), 40 facts each, k=20, 20 options, seed 42"
    demo_report.plot(rows, cols, title, tmp_path / "demo.png", 1 / 20)
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
