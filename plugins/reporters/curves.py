"""Training-curve figures: test error and loss per epoch, one figure per (dataset, model)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from pcnbench.api import ReportFigure

from .points import BASELINE, ModelGroup, Point, number
from .style import DASHES, bottom_legend, minor_tick, slug

if TYPE_CHECKING:
    from pcnbench.api import ReportData

__all__ = ["cumulative_epochs", "curve_figures"]

CAPTION = (
    "Mean over seeds. Left: test error (100 − accuracy) on a log scale, so small "
    "differences near the top stay visible next to a collapse; right: training loss "
    "per epoch and test loss where evaluated. Dotted vertical lines mark transform or "
    "pruning phases, coloured by method; after training restarts from an earlier state "
    "(a rewind), the epoch count continues, so the x axis is the total training each "
    "method paid for."
)


def cumulative_epochs(epochs: list[float]) -> list[float]:
    """Epoch numbers of one cell's records as training epochs spent so far.

    Training that restarts from a saved state (rewinding) numbers its epochs again from the
    rewind point; this continues the count so every epoch trained has its own x.
    """
    out, offset, prev = [], 0.0, None
    for e in epochs:
        if prev is not None and e <= prev:
            offset += prev - e + 1
        out.append(e + offset)
        prev = e
    return out


def _cell_curves(epochs: pd.DataFrame, cell_id: str) -> pd.DataFrame:
    rows = epochs[epochs["cell_id"] == cell_id].sort_values("idx")
    if rows.empty:
        return rows
    rows = rows.assign(x=cumulative_epochs([float(e) for e in rows["epoch"]]))
    return rows


def _events(data: ReportData, cell_id: str, curve: pd.DataFrame) -> list[tuple[float, str]]:
    """(x in cumulative epochs, phase name) of the cell's transform and pruning phases."""
    phases = data.phases
    if phases.empty or "kind" not in phases.columns or curve.empty:
        return []
    mine = phases[(phases["cell_id"] == cell_id) & (phases["kind"] == "transform")]
    first = curve.iloc[0]
    steps_per_epoch = number(first["step"]) / number(first["epoch"]) if first["epoch"] else 0
    if not steps_per_epoch or not math.isfinite(steps_per_epoch):
        return []
    return [(number(r["start_step"]) / steps_per_epoch, str(r["name"])) for _, r in mine.iterrows()]


def _setting_cells(point: Point) -> list[str]:
    return [str(c) for c in point.rows["cell_id"]]


def _curves_figure(data: ReportData, group: ModelGroup, colors: dict[str, str]) -> Any:
    epochs = data.epochs
    if epochs.empty:
        return None
    # One curve per method setting: a multi-result cell (pruning levels) is one training history.
    settings: dict[tuple[str, tuple[str, ...]], Point] = {}
    for point in group.points:
        key = (point.method, tuple(sorted(_setting_cells(point))))
        settings.setdefault(key, point)
    fig = Figure(figsize=(7.4, 4.4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    dash_of: dict[str, int] = {}
    handles = []
    drawn = False
    events_drawn: set[tuple[str, float]] = set()
    event_names: dict[tuple[str, str], list[float]] = {}
    for (method, cells), point in settings.items():
        curves = [_cell_curves(epochs, c) for c in cells]
        curves = [c for c in curves if not c.empty]
        if not curves:
            continue
        dash = DASHES[dash_of.setdefault(method, 0) % len(DASHES)]
        dash_of[method] += 1
        color = colors[method]
        both = pd.concat(curves)
        acc = both.dropna(subset=["test_accuracy"]).groupby("x")["test_accuracy"].mean() * 100
        train = both.dropna(subset=["train_loss"]).groupby("x")["train_loss"].mean()
        test = both.dropna(subset=["test_loss"]).groupby("x")["test_loss"].mean()
        setting = point.base_setting
        label = f"{method} {setting}".strip()
        z = 3 if method == BASELINE else 2  # the reference stays visible on top
        if len(acc):
            error = (100.0 - acc).clip(lower=0.01)  # log axis: a perfect score sits at 0.01%
            ax_acc.plot(
                error.index, error.values, ls=dash, color=color, marker="o", ms=3.5, zorder=z
            )
        if len(train):
            ax_loss.plot(train.index, train.values, ls=dash, color=color, zorder=z)
        if len(test):
            ax_loss.plot(
                test.index, test.values, ls="", color=color, marker="o", ms=4, mfc="white", zorder=z
            )
        handles.append(Line2D([], [], color=color, ls=dash, label=label))
        drawn = drawn or len(acc) > 0 or len(train) > 0
        for x, name in _events(data, cells[0], curves[0]):
            if (method, round(x, 3)) in events_drawn:
                continue
            events_drawn.add((method, round(x, 3)))
            event_names.setdefault((method, name), []).append(x)
            for ax in (ax_acc, ax_loss):
                ax.axvline(x, color=color, lw=1.0, ls=(0, (1, 1.5)), alpha=0.9, zorder=1)
    if not drawn:
        return None
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        ax.set_xlim(left=0)
    ax_acc.set_xlabel("Epochs trained (cumulative)")
    # Error on a log axis keeps 2% vs 3% readable next to a collapse to 60%.
    ax_acc.set_yscale("log")
    ax_acc.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax_acc.yaxis.set_minor_formatter(FuncFormatter(minor_tick))
    ax_acc.set_ylabel("Test error (%, log scale)")
    ax_acc.set_title("Test error (100 − accuracy) at evaluated epochs")
    ax_loss.set_xlabel("Epochs trained (cumulative)")
    ax_loss.set_ylabel("Cross-entropy loss")
    ax_loss.set_title("Loss: train (lines), test (circles)")
    ax_loss.set_yscale("log")
    ax_loss.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    for (method, name), xs in event_names.items():
        at = ", ".join(f"{x:g}" for x in sorted(xs)[:4]) + (", …" if len(xs) > 4 else "")
        handles.append(
            Line2D(
                [],
                [],
                color=colors[method],
                lw=1.0,
                ls=(0, (1, 1.5)),
                label=f"{method}: {name} (epoch {at})",
            )
        )
    fig.suptitle(f"{group.title}: training curves, mean over seeds")
    bottom_legend(fig, handles)
    return fig


def curve_figures(
    data: ReportData, groups: list[ModelGroup], colors: dict[str, str]
) -> list[ReportFigure]:
    """Training curves of every (dataset, model) group; skipped without per-epoch records."""
    out = []
    for group in groups:
        name, title = f"curves-{slug(group.title)}", f"{group.title}: training curves"
        figure = _curves_figure(data, group, colors)
        if figure is None:
            out.append(ReportFigure(name, title, "", skipped="no per-epoch records"))
        else:
            out.append(ReportFigure(name, title, CAPTION, figure=figure))
    return out
