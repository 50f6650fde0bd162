"""Readable report figures and failure lists: tick labels, point labels, estimated energy.

Figures are checked the way a reader sees them: after the report's save step, drawn with Agg,
by the display-space boxes of the text that was drawn.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pcnbench.report import load_report_data
from pcnbench.store import Store
from pcnbench_plugins.reporters.curves import curve_figures
from pcnbench_plugins.reporters.figures import _save, render_figures
from pcnbench_plugins.reporters.html import render_html
from pcnbench_plugins.reporters.pareto import pareto_figures
from pcnbench_plugins.reporters.points import model_groups, operating_points
from pcnbench_plugins.reporters.style import method_colors, style

from .reportdata import fake_cell, report_host

COLORS = method_colors(["dense", "pcn", "magnitude", "lottery", "lowrank"])


def _rows(points: list[tuple[str, dict[str, Any], float, int]], **extra: Any) -> pd.DataFrame:
    """Result rows of one model, two seeds each: (method, setting, accuracy, parameters)."""
    out = []
    for method, setting, acc, count in points:
        for seed in (0, 1):
            params = json.dumps(setting, sort_keys=True)
            out.append(
                {
                    "cell_id": f"{method}{params}{seed}",
                    "dataset": "digits",
                    "dataset_params": "{}",
                    "model": "mlp",
                    "model_params": "{}",
                    "method": method,
                    "method_params": params,
                    "seed": seed,
                    "status": "done",
                    "accuracy": acc + 0.0004 * seed,
                    "params": count,
                    "dense_params": 301_066,
                    "macs": count,
                    "dense_macs": 301_066,
                    "train_time_s": 2.0 + count / 1e5,
                    **extra,
                }
            )
    return pd.DataFrame(out)


def _saved(figure: Any, tmp_path: Path, stem: str) -> Any:
    """`figure` after the report's save step, drawn once more the way a reader's copy is."""
    with style():
        _save(figure, tmp_path, stem)
        FigureCanvasAgg(figure).draw()
    return figure


def _drawn_labels(axis: Any, renderer: Any) -> list[tuple[str, Any]]:
    """(text, box) of every tick label drawn on `axis`: non-empty, visible, inside the view."""
    lo, hi = sorted(axis.get_view_interval())
    slack = (hi - lo) * 1e-9
    out = []
    for ticks in (axis.get_major_ticks(), axis.get_minor_ticks()):
        for tick in ticks:
            label = tick.label1
            if (
                label.get_visible()
                and label.get_text()
                and lo - slack <= tick.get_loc() <= hi + slack
            ):
                out.append((label.get_text(), label.get_window_extent(renderer)))
    return out


def _overlapping(boxes: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]


def _figure(items: list, name: str) -> Any:
    return next(i.figure for i in items if i.name == name)


# Quickstart-like costs: 17k to 300k parameters, log x spanning about 1.3 decades.
WIDE = [
    ("dense", {}, 0.9722, 301_066),
    ("pcn", {"keep": "f0.0625"}, 0.9722, 71_000),
    ("pcn", {"keep": "v0.99"}, 0.9722, 230_000),
    ("magnitude", {"sparsity": 0.9}, 0.9694, 31_000),
    ("magnitude", {"sparsity": 0.95}, 0.9680, 17_000),
    ("lottery", {"level": 1}, 0.9736, 150_000),
    ("lottery", {"level": 2}, 0.9750, 77_000),
    ("lottery", {"level": 3}, 0.9736, 38_000),
    ("lowrank", {"rank": "r0.0625"}, 0.9708, 70_000),
    ("lowrank", {"rank": "r0.25"}, 0.9708, 170_000),
]


def test_log_axis_tick_labels_do_not_overlap_and_share_one_style(tmp_path: Path) -> None:
    with style():
        items = pareto_figures(model_groups(_rows(WIDE)), COLORS)
    fig = _saved(_figure(items, "pareto-digits-parameters"), tmp_path, "params")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = _drawn_labels(ax.xaxis, FigureCanvasAgg(fig).get_renderer())
    assert len(labels) >= 2
    assert _overlapping(labels) == []
    # one formatter: 30k, 100k, 200k, never 3×10⁴ (mathtext) beside them
    texts = [text for text, _ in labels]
    assert all(re.fullmatch(r"\d+(\.\d+)?[kMGT]?", t) for t in texts), texts


def test_point_labels_do_not_overlap_each_other(tmp_path: Path) -> None:
    # Sixteen settings on the Pareto front within 3% of each other's cost and 0.5 pp of
    # accuracy: every one is labelled, and the labels are longer than the gaps between points.
    crowded = [("dense", {}, 0.975, 301_066)]
    crowded += [("pcn", {"keep": f"f{k}"}, 0.950 + 0.0003 * k, 60_000 + 100 * k) for k in range(16)]
    with style():
        items = pareto_figures(model_groups(_rows(crowded)), COLORS)
    fig = _saved(_figure(items, "pareto-digits-parameters"), tmp_path, "crowded")
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    notes = [(t.get_text(), type(t).__mro__[1].get_window_extent(t, renderer)) for t in ax.texts]
    assert len(notes) == 17  # every front point and dense
    assert _overlapping(notes) == []


def _epoch_records(errors: list[float]) -> list[dict[str, Any]]:
    return [
        {"phase": "train", "epoch": e, "step": 10 * e, "train_loss": 0.4 - 0.01 * e,
         "test_accuracy": 1 - err / 100, "test_loss": 0.3, "lr": 0.1, "seconds": 1.0}
        for e, err in enumerate(errors, start=1)
    ]  # fmt: skip


def _store(out: Path, cells: list[tuple[Any, str, list[dict], list[dict], str]]) -> Path:
    """A results database of `cells`: (cell, status, results, epoch records, error)."""
    store = Store(out / "results.db")
    run = store.begin_run("small", "small.yaml", "0" * 64, "name: small\n", ["pcnbench"], {})
    for cell, status, results, epochs, error in cells:
        store.start_cell(cell, run, "cpu")
        if status == "done":
            store.finish_cell(cell.id, "done", results=results, epochs=epochs)
        else:
            store.finish_cell(cell.id, status, error=error)
    store.end_run(run, "done")
    store.close()
    return out


def test_every_axis_has_at_least_two_tick_labels(tmp_path: Path) -> None:
    # Test error between 9.5% and 15%: a log axis with no decade inside, one major tick (10).
    cells = []
    for seed in (0, 1):
        cell = fake_cell("small", {"width": 8}, "dense", {}, seed, dataset="digits")
        results = [{"accuracy": 0.9, "params": 100, "dense_params": 100}]
        cells.append((cell, "done", results, _epoch_records([15, 13, 11.5, 10.5, 9.5]), ""))
    data = load_report_data(_store(tmp_path, cells), report_host())
    with style():
        items = curve_figures(data, operating_points(data), COLORS)
    fig = _saved(items[0].figure, tmp_path, "curves")
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = _drawn_labels(axis, renderer)
            assert len(labels) >= 2, f"{ax.get_title()} {axis.axis_name}: {labels}"
            assert _overlapping(labels) == []


def _energy_cells(measured: bool) -> list[tuple[Any, str, list[dict], list[dict], str]]:
    """Dense and PCN over two seeds, energy estimated everywhere (measured too for dense)."""
    cells = []
    for method, setting, params in (("dense", {}, 100), ("pcn", {"keep": "f0.25"}, 30)):
        for seed in (0, 1):
            cell = fake_cell("small", {"width": 8}, method, setting, seed, dataset="digits")
            row = {
                "accuracy": 0.9 + 0.01 * seed,
                "params": params,
                "dense_params": 100,
                "train_time_s": 2.0 * params,
                "train_energy_j": 30.0 * params if measured and method == "dense" else math.nan,
                "energy_method": "cpu: unmetered (no RAPL (/sys/class/powercap absent))",
                "train_energy_j_est": 20.0 * params,
                "energy_est_method": "codecarbon_estimate: cell-average power × train_time_s",
            }
            cells.append((cell, "done", [row], [], ""))
    return cells


def test_energy_figure_of_estimates_only_is_left_out_saying_why(tmp_path: Path) -> None:
    data = load_report_data(_store(tmp_path, _energy_cells(measured=False)), report_host())
    entries = render_figures(data, tmp_path / "figures")
    energy = next(e for e in entries if e.title == "digits: accuracy against training energy")
    assert energy.stem == "" and energy.files == []
    assert "estimate" in energy.skipped and "training time" in energy.skipped
    assert "codecarbon_estimate: cell-average power × train_time_s" in energy.skipped
    (tmp_path / "figures" / "figures.json").write_text(json.dumps([vars(e) for e in entries]))
    html = render_html(data, tmp_path)
    figures = html[html.index('<section id="figures">') : html.index('<section id="failed">')]
    assert (
        "<b>digits: accuracy against training energy</b>: left out: no training energy" in figures
    )
    assert 'id="fig-pareto-digits-training-energy"' not in figures


def test_energy_figure_mixing_estimates_marks_and_says_so(tmp_path: Path) -> None:
    data = load_report_data(_store(tmp_path, _energy_cells(measured=True)), report_host())
    with style():
        items = pareto_figures(operating_points(data), COLORS)
    energy = next(i for i in items if i.name == "pareto-digits-training-energy")
    assert energy.figure is not None
    assert "hollow markers are estimates" in energy.caption
    ax = energy.figure.axes[0]
    assert "hollow markers: estimated" in ax.get_xlabel()
    faces = {
        line.get_markerfacecolor() for line in ax.lines if line.get_marker() not in ("", "None")
    }
    assert "white" in faces  # the estimated PCN point, hollow
    legend = [t.get_text() for legend in energy.figure.legends for t in legend.get_texts()]
    assert "energy estimated (hollow)" in legend


def test_identical_errors_are_grouped_with_a_count(tmp_path: Path) -> None:
    error = "ModuleNotFoundError: No module named 'torchvision'"
    cells = [
        (fake_cell("small", {"width": 8}, "pcn", {"keep": f"f{k}"}, 0, dataset="digits"), "failed")
        for k in range(5)
    ]
    cells = [(cell, status, [], [], error) for cell, status in cells]
    other = fake_cell("small", {"width": 8}, "lowrank", {}, 0, dataset="digits")
    cells.append((other, "failed", [], [], "RuntimeError: rank 0 leaves nothing to train"))
    data = load_report_data(_store(tmp_path, cells), report_host())
    html = render_html(data, tmp_path)
    failed = html[html.index('<section id="failed">') : html.index('<section id="provenance">')]
    assert failed.count("No module named &#39;torchvision&#39;") == 1  # one row, not five
    assert failed.count("RuntimeError: rank 0 leaves nothing to train") == 1
    row = failed[failed.index("torchvision") :]
    row = row[: row.index("</tr>")]
    assert '<td class="r">5</td>' in row and "<summary>5 cells</summary>" in row
    for k in range(5):
        assert f"pcn(keep=f{k})" in row
    assert "6 cells did not finish, 2 distinct reasons" in failed
