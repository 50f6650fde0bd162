"""Figures: Pareto fronts, training curves, PCN spectra and IMP accuracy against density.

Each figure is written as SVG (inlined by the HTML report), PDF (for papers) and PNG, under
`figures/`, with a manifest (`figures/figures.json`) that also says which figures were skipped
and why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .points import ModelGroup, Point, model_groups, number
from .stats import pareto_front

if TYPE_CHECKING:
    from pcnbench.report import ReportData

__all__ = [
    "FigureEntry",
    "cumulative_epochs",
    "method_colors",
    "pcn_layers",
    "render_figures",
    "write_figures",
]

# Okabe–Ito: distinguishable with colour-blindness and in greyscale print; dense is black.
_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B"]
_FIXED = {
    "dense": "#000000",
    "pcn": "#0072B2",
    "magnitude": "#D55E00",
    "lottery": "#009E73",
    "lowrank": "#CC79A7",
}
_MODEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
_DASHES = ["-", "--", ":", "-."]

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "figure.titlesize": 11.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "svg.fonttype": "none",  # text stays text: small, sharp, searchable in the HTML
    "svg.hashsalt": "pcnbench",  # stable element ids, so identical data gives identical files
    "pdf.fonttype": 42,  # TrueType in PDFs, as publishers ask
    "font.family": ["DejaVu Sans", "sans-serif"],
}


@dataclass
class FigureEntry:
    """One figure of the report: where it is, what it shows, or why it was skipped."""

    kind: str  # "pareto", "curves", "spectra" or "imp"
    title: str
    caption: str = ""
    stem: str = ""  # file stem under figures/ (empty when skipped)
    files: list[str] = field(default_factory=list)
    skipped: str = ""  # why there is no figure


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE):
        yield


def method_colors(methods: list[str]) -> dict[str, str]:
    """One colour per method, stable for the built-in ones, dense always black."""
    colors = {}
    spare = [c for c in _PALETTE if c not in _FIXED.values()] + [
        c for c in _PALETTE if c in _FIXED.values()
    ]
    i = 0
    for name in methods:
        if name in _FIXED:
            colors[name] = _FIXED[name]
        else:
            colors[name] = spare[i % len(spare)]
            i += 1
    return colors


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:80]


def _save(fig: Figure, out_dir: Path, stem: str) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    meta = {
        "svg": {"Date": None, "Creator": None},
        "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
        "png": {"Software": None},
    }
    for ext in ("svg", "pdf", "png"):
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, format=ext, dpi=200 if ext == "png" else None, metadata=meta[ext])
        files.append(path.name)
    return files


def _bottom_legend(fig: Figure, handles: list[Any], max_cols: int = 4) -> None:
    """A legend under the axes, in as many columns as fit the figure's width, and room for it."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    legend = None
    for ncol in range(min(max_cols, len(handles)), 0, -1):
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
        if legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            break
    assert legend is not None
    height = legend.get_window_extent(renderer).height / fig.bbox.height
    fig.tight_layout(rect=(0, height + 0.01, 1, 1))


def _log_if_wide(ax: Any, axis: str, values: list[float]) -> bool:
    """Log scale when the positive values span more than 10×; returns whether it did."""
    if _is_wide(values):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    return False


# Pareto ---------------------------------------------------------------------------------------

_COSTS = [
    # (column, axis label, what it is called in titles, per-seed spread shown as x bars)
    ("params", "Parameters needed at inference (count)", "parameters", False),
    ("macs", "Inference MACs per sample", "inference MACs", False),
    ("train_energy_j", "Training energy (J)", "training energy", True),
    ("train_time_s", "Training time (s)", "training time", True),
]


def _point_cost(point: Point, key: str) -> pd.Series:
    if key != "train_energy_j":
        return point.values(key)
    measured = point.values("train_energy_j")
    estimate = point.values("train_energy_j_est")
    # A point is either measured on every seed or estimated: never a mix of the two.
    return measured if measured.notna().all() else estimate


def _energy_axis_label(points: list[Point]) -> str:
    kinds = set()
    for p in points:
        measured = p.values("train_energy_j")
        kinds.add("measured" if measured.notna().all() else "estimated")
    if kinds == {"estimated"}:
        return "Training energy (J, estimated)"
    if kinds == {"measured", "estimated"}:
        return "Training energy (J; hollow markers: estimated)"
    return "Training energy (J, measured)"


def _pareto_skips(points: list[tuple[ModelGroup, Point]]) -> dict[str, str]:
    """Cost axes no point has a value for, with the reason."""
    skipped = {}
    for key, _label, _title, _spread in _COSTS:
        if any(_point_cost(p, key).notna().all() for _, p in points):
            continue
        why = "no values"
        if key == "train_energy_j":
            why = "unmetered"
            reasons = {r for _, p in points for r in p.energy_reasons()}
            if reasons:
                why += f" ({'; '.join(sorted(reasons))})"
        skipped[key] = why
    return skipped


def _pareto_figure(
    dataset: str, groups: list[ModelGroup], colors: dict[str, str], cost: tuple
) -> Any:
    """Accuracy against one cost for every operating point of one dataset."""
    key, label, title, spread = cost
    points = [(g, p) for g in groups for p in g.points]
    models = list(dict.fromkeys(g.model for g in groups))
    markers = {m: _MODEL_MARKERS[i % len(_MODEL_MARKERS)] for i, m in enumerate(models)}
    fig = Figure(figsize=(6.8, 4.6))
    ax = fig.subplots()
    xs, ys, xerr, yerr, styles = [], [], [], [], []
    for group, point in points:
        values = _point_cost(point, key)
        if not values.notna().all():
            continue
        acc = point.values("accuracy") * 100
        mean = float(values.mean())
        xs.append(mean)
        ys.append(float(acc.mean()))
        # Costs that vary by seed: the range over seeds (a s.d. bar would cross zero on log x).
        low, high = (mean - float(values.min()), float(values.max()) - mean) if spread else (0, 0)
        xerr.append((low, high))
        yerr.append(float(acc.std(ddof=1)) if len(acc) > 1 else 0.0)
        estimated = key == "train_energy_j" and point.values("train_energy_j").isna().any()
        styles.append((group, point, estimated))
    # Hollow markers tell estimates from measurements, where a figure holds both.
    mixed = len({estimated for _, _, estimated in styles}) > 1
    front = set(pareto_front(xs, ys))
    short = _short_labels(points)
    floor = _outlier_floor(ys)
    labels: list[tuple[float, float, str, str]] = []
    below: list[tuple[float, float, str, str]] = []  # (x, accuracy, label, colour) off the axis
    for i, (group, point, hollow) in enumerate(styles):
        on_front = i in front
        color = colors[point.method]
        if floor is not None and ys[i] < floor:
            text = short[id(point)] if not point.is_dense else "dense"
            below.append((xs[i], ys[i], text, color))
            continue
        alpha = 1.0 if on_front else (0.6 if point.is_dense else 0.3)
        bars = [[xerr[i][0]], [xerr[i][1]]] if any(xerr[i]) else None
        ax.errorbar(
            xs[i],
            ys[i],
            xerr=bars,
            yerr=yerr[i] or None,
            fmt="*" if point.is_dense else markers[group.model],
            ms=14 if point.is_dense else 7,
            color=color,
            mfc="white" if hollow and mixed else color,
            mec=color,
            alpha=alpha,
            elinewidth=0.9,
            capsize=2.5,
            zorder=4 if on_front else 3,
        )
        if point.is_dense:
            text = f"dense {group.model}" if len(models) > 1 else "dense"
            labels.append((xs[i], ys[i], text, "#222222"))
        elif on_front:
            labels.append((xs[i], ys[i], short[id(point)], color))
    # Each method's settings on one model, joined in order of size: a trajectory to follow.
    paths: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for i, (group, point, _hollow) in enumerate(styles):
        if not point.is_dense:
            size = point.mean("params")
            paths.setdefault((point.method, group.model), []).append((size, xs[i], ys[i]))
    for (method, _model), members in paths.items():
        if len(members) > 1:
            members.sort()
            ax.plot(
                [m[1] for m in members],
                [m[2] for m in members],
                color=colors[method],
                lw=0.8,
                alpha=0.35,
                zorder=1,
            )
    order = sorted(front, key=lambda i: xs[i])
    if order:
        fx = [xs[i] for i in order] + [max(xs)]
        fy = [ys[i] for i in order] + [ys[order[-1]]]
        ax.step(fx, fy, where="post", color="#555555", lw=1.1, ls="--", zorder=2)
    logx = _log_if_wide(ax, "x", xs)
    if key == "train_energy_j":
        label = _energy_axis_label([p for _, p, _ in styles])
    ax.set_xlabel(label + (", log scale" if logx else ""))
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{dataset}: test accuracy against {title}")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _si_tick(v)))
    kept = [i for i, y in enumerate(ys) if floor is None or y >= floor]
    _pad_limits(ax, xs, [ys[i] for i in kept], logx, xerr, [yerr[i] for i in kept])
    bottom = ax.get_ylim()[0]
    for x, y, text, color in below:
        # Far below the rest: a marker on the axis edge with its value, not a squashed axis.
        ax.plot([x], [bottom], marker="v", ms=8, color=color, clip_on=False, zorder=5, ls="")
        labels.append((x, bottom, f"{text}: {y:.1f}% (off scale)", color))
    handles = [
        Line2D(
            [],
            [],
            color=colors[m],
            marker="*" if m == "dense" else "o",
            ls="",
            ms=10 if m == "dense" else 7,
            label=m,
        )
        for m in dict.fromkeys(p.method for _, p in points)
    ]
    if len(models) > 1 and any(not p.is_dense for _, p in points):
        handles += [
            Line2D([], [], color="#666666", marker=markers[m], ls="", ms=7, label=m) for m in models
        ]
    handles.append(Line2D([], [], color="#555555", ls="--", lw=1.1, label="Pareto frontier"))
    handles.append(
        Line2D([], [], color="#888888", marker="o", ls="", alpha=0.3, label="dominated (faded)")
    )
    _bottom_legend(fig, handles)
    # Labels go last: their placement needs the final axes box and limits.
    placed: list[Any] = []
    obstacles = [(x, y) for x, y in zip(xs, ys, strict=True)]
    obstacles += [(x, y + e) for x, y, e in zip(xs, ys, yerr, strict=True) if e]
    obstacles += [(x, y - e) for x, y, e in zip(xs, ys, yerr, strict=True) if e]
    for x, y, text, color in labels:
        _place_label(ax, x, y, text, obstacles, placed, color)
    return fig


def _short_labels(points: list[tuple[ModelGroup, Point]]) -> dict[int, str]:
    """id(point) → what tells it apart from the same method's other points on its model."""
    by_series: dict[tuple[str, str], list[Point]] = {}
    for group, point in points:
        by_series.setdefault((point.method, group.model), []).append(point)
    out = {}
    for (method, _model), members in by_series.items():
        common = set(members[0].items).intersection(*(p.items for p in members[1:]))
        for point in members:
            keep = point.items if len(members) == 1 else [i for i in point.items if i not in common]
            text = ", ".join([*keep, point.tag] if point.tag else keep)
            out[id(point)] = f"{method} {text}" if len(text) < 28 and text else text or method
    return out


def _place_label(
    ax: Any,
    x: float,
    y: float,
    text: str,
    points: list[tuple[float, float]],
    placed: list[Any],
    color: str = "#333333",
) -> None:
    """Annotate (x, y) where the text covers the fewest points and earlier labels, inside the axes.

    `placed` collects the display-space boxes of the labels placed so far.
    """
    renderer = FigureCanvasAgg(ax.figure).get_renderer()
    scale = ax.figure.dpi / 72.0
    px, py = ax.transData.transform((x, y))
    others = [ax.transData.transform(p) for p in points if p != (x, y)]
    box = ax.get_window_extent(renderer)
    note = ax.annotate(
        text,
        (x, y),
        xytext=(8, -8),
        textcoords="offset points",
        fontsize=7.5,
        color=color,
        arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5, "shrinkB": 5},
    )
    offsets = [(8, -8), (-8, -8), (8, 8), (-8, 8), (12, -20), (-12, -20), (12, 20)]
    offsets += [(-12, 20), (0, 14), (0, -16), (20, -34), (-20, -34), (20, 34), (-20, 34)]
    best = None
    margin = 5 * scale  # about a marker's radius
    for dx, dy in offsets:
        ha = "left" if dx > 0 else "right" if dx < 0 else "center"
        va = "top" if dy < 0 else "bottom"
        note.set_position((dx, dy))
        note.set_ha(ha)
        note.set_va(va)
        note.update_positions(renderer)
        bbox = Text.get_window_extent(note, renderer)  # the text alone, not its leader line
        hits = sum(
            bbox.x0 - margin <= ox <= bbox.x1 + margin
            and bbox.y0 - margin <= oy <= bbox.y1 + margin
            for ox, oy in others
        )
        clashes = sum(bbox.overlaps(other) for other in placed)
        near = (
            bbox.x0 - margin <= px <= bbox.x1 + margin
            and bbox.y0 - margin <= py <= bbox.y1 + margin
        )
        outside = bbox.x0 < box.x0 or bbox.x1 > box.x1 or bbox.y0 < box.y0 or bbox.y1 > box.y1
        cost = hits + 10 * clashes + 3 * near + 20 * outside + 0.01 * (abs(dx) + abs(dy))
        if best is None or cost < best[0]:
            best = (cost, dx, dy, ha, va, bbox)
    assert best is not None
    _, dx, dy, ha, va, bbox = best
    note.set_position((dx, dy))
    note.set_ha(ha)
    note.set_va(va)
    placed.append(bbox)


def _is_wide(values: list[float]) -> bool:
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    return len(pos) >= 2 and max(pos) / min(pos) > 10


def _si_tick(value: float) -> str:
    """Tick labels such as 250, 25k, 1.5M (no offsets or exponents to decode)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _outlier_floor(ys: list[float]) -> float | None:
    """An accuracy below which points are collapsed outliers that would squash the axis.

    Points more than 3 interquartile ranges (at least 0.5 pp) under the lower quartile; None
    when there are none (or too few points to tell).
    """
    if len(ys) < 4:
        return None
    q1, q3 = np.percentile(ys, [25, 75])
    floor = q1 - 3 * max(q3 - q1, 0.5)
    return floor if min(ys) < floor else None


def _pad_limits(
    ax: Any,
    xs: list[float],
    ys: list[float],
    logx: bool,
    xerr: list[tuple[float, float]],
    yerr: list[float],
) -> None:
    """Room around the points so markers and error bars are not clipped by the axes.

    `xerr` holds (below, above) extents; costs are never negative, so neither is the x axis.
    """
    if not xs:
        return
    lo = min(x - e[0] if not logx or x - e[0] > 0 else x for x, e in zip(xs, xerr, strict=True))
    hi = max(x + e[1] for x, e in zip(xs, xerr, strict=True))
    if logx:
        ax.set_xlim(lo / 1.6, hi * 1.6)
    elif hi > lo:
        span = hi - lo
        ax.set_xlim(max(0.0, lo - 0.08 * span) if lo >= 0 else lo - 0.08 * span, hi + 0.08 * span)
    else:
        ax.set_xlim(lo * 0.8 if lo else -1, hi * 1.2 if hi else 1)
    ylo = min(y - e for y, e in zip(ys, yerr, strict=True))
    yhi = max(y + e for y, e in zip(ys, yerr, strict=True))
    if yhi - ylo < 0.5:  # one point or a tight cluster: show at least a half-point window
        mid = (ylo + yhi) / 2
        ylo, yhi = mid - 0.25, mid + 0.25
    pad = 0.12 * (yhi - ylo)
    ax.set_ylim(ylo - pad, yhi + pad)


# Training curves ------------------------------------------------------------------------------


def cumulative_epochs(epochs: list[float]) -> list[float]:
    """Epoch numbers of one cell's records as training epochs spent so far.

    Training that restarts from a saved state (IMP rewinding) numbers its epochs again from the
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
    # One curve per method setting: a multi-result cell (IMP levels) is one training history.
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
        dash = _DASHES[dash_of.setdefault(method, 0) % len(_DASHES)]
        dash_of[method] += 1
        color = colors[method]
        both = pd.concat(curves)
        acc = both.dropna(subset=["test_accuracy"]).groupby("x")["test_accuracy"].mean() * 100
        train = both.dropna(subset=["train_loss"]).groupby("x")["train_loss"].mean()
        test = both.dropna(subset=["test_loss"]).groupby("x")["test_loss"].mean()
        setting = _base_setting(point)
        label = f"{method} {setting}".strip()
        z = 3 if method == "dense" else 2  # the reference stays visible on top
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
    ax_acc.yaxis.set_minor_formatter(FuncFormatter(_minor_tick))
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
    _bottom_legend(fig, handles)
    return fig


def _minor_tick(value: float, _pos: int) -> str:
    """Label the 2s and 5s between decades, so a narrow log axis still has numbers."""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return (
        f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""
    )


def _base_setting(point: Point) -> str:
    # Drop the per-result key (e.g. "level=3"): a curve covers every result of its cell.
    parts = [p for p in point.setting.split(", ") if not p.startswith(("level=", "result "))]
    return ", ".join(parts)


# PCN spectra ----------------------------------------------------------------------------------


def pcn_layers(value: Any) -> list[dict[str, Any]]:
    """The `pcn_layers` column of one result as a list of per-layer dicts ([] if absent)."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        value = [{"name": k, **v} for k, v in value.items() if isinstance(v, dict)]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _spectrum(layer: dict[str, Any]) -> np.ndarray | None:
    """Cumulative explained-variance fractions of a layer record's eigenvalues (descending)."""
    eig = layer.get("spectrum", layer.get("eigenvalues"))
    if not isinstance(eig, list) or not eig:
        return None
    values = np.clip(np.asarray(eig, dtype=float), 0, None)
    total = values.sum()
    return np.cumsum(values) / total if total > 0 else None


def _spectra_figure(group: ModelGroup, colors: dict[str, str]) -> Any:
    pcn = [p for p in group.points if p.method == "pcn"]
    per_point = []
    for point in pcn:
        first = point.rows.sort_values("seed").iloc[0]
        # A layer that reuses another's basis (a ResNet shortcut) repeats that spectrum.
        layers = [
            ly
            for ly in pcn_layers(first.get("pcn_layers"))
            if ly.get("basis") in (None, ly.get("name"))
        ]
        if any(_spectrum(layer) is not None for layer in layers):
            per_point.append((point, int(first["seed"]), layers))
    if not per_point:
        return None
    names = list(dict.fromkeys(str(ly.get("name")) for _, _, lys in per_point for ly in lys))
    ncols = min(3 if len(names) <= 9 else 4, len(names))
    nrows = math.ceil(len(names) / ncols)
    row_height = 2.5 if ncols <= 3 else 2.1
    fig = Figure(figsize=(7.4, row_height * nrows + 1.0))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    point_style = {id(p): _DASHES[i % len(_DASHES)] for i, (p, _, _) in enumerate(per_point)}
    shades = matplotlib.colormaps["Blues"](np.linspace(0.55, 0.95, len(per_point)))
    for ax, name in zip(axes.flat, names, strict=False):
        drawn_curves: list[np.ndarray] = []
        for j, (point, _seed, layers) in enumerate(per_point):
            layer = next((ly for ly in layers if str(ly.get("name")) == name), None)
            curve = _spectrum(layer) if layer else None
            if curve is None:
                continue
            x = np.arange(1, len(curve) + 1)
            shade = shades[j]
            # Settings transformed at the same point share a spectrum: draw it once.
            if not any(len(c) == len(curve) and np.allclose(c, curve) for c in drawn_curves):
                ax.plot(x, curve * 100, color=colors.get("pcn", "#0072B2"), lw=1.4)
                drawn_curves.append(curve)
            k = int(number(layer.get("k")) or 0)
            if 1 <= k <= len(curve):
                ax.plot(
                    [k],
                    [curve[k - 1] * 100],
                    marker="o",
                    ms=6,
                    color=shade,
                    mec="black",
                    mew=0.6,
                    zorder=5,
                    ls="",
                )
                ax.axvline(k, color=shade, lw=0.9, ls=point_style[id(point)], zorder=1)
        d = int(number(layer.get("d")) or 0) if layer else 0
        shown = f"layer {name}" if name.isdigit() else name
        ax.set_title(f"{shown}: input width d = {d}" if d else shown, fontsize=9)
        if len(drawn_curves) and max(len(c) for c in drawn_curves) > 30:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_ylim(0, 102)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Principal components kept, k")
    for ax in axes[:, 0]:
        ax.set_ylabel("Variance explained (%)")
    handles = [Line2D([], [], color=colors.get("pcn", "#0072B2"), label="cumulative spectrum")]
    handles += [
        Line2D(
            [],
            [],
            color=shades[j],
            marker="o",
            mec="black",
            mew=0.6,
            ls=point_style[id(p)],
            label=f"kept k: {p.setting or 'pcn'}",
        )
        for j, (p, _, _) in enumerate(per_point)
    ]
    seeds = sorted({s for _, s, _ in per_point})
    fig.suptitle(
        f"{group.title}: input spectra of the PCN-transformed layers "
        f"(seed {', '.join(map(str, seeds))})"
    )
    _bottom_legend(fig, handles)
    return fig


# IMP ------------------------------------------------------------------------------------------


def _imp_figure(group: ModelGroup, colors: dict[str, str]) -> Any:
    """Lottery accuracy per level against weights remaining, magnitude pruning and dense beside."""
    lottery = [p for p in group.points if p.method == "lottery"]
    if not lottery:
        return None
    fig = Figure(figsize=(6.8, 4.2))
    ax = fig.subplots()

    def spread(values: pd.Series) -> float:
        return float(values.std(ddof=1)) if len(values.dropna()) > 1 else 0.0

    # (x, y, s.d., text, colour, series) for every point drawn.
    marks: list[tuple[float, float, float, str, str, str]] = []
    series: dict[str, list[Point]] = {}
    for point in lottery:
        series.setdefault(_base_setting(point), []).append(point)
    for setting, points in series.items():
        name = f"lottery {setting}".strip()
        level0 = points[0].values("level0_accuracy").dropna() * 100
        if len(level0):  # the unpruned network of the same runs: level 0 at 100%
            marks.append((100.0, float(level0.mean()), spread(level0), "L0", "#333333", name))
        for p in points:
            level = number(p.rows["level"].iloc[0]) if "level" in p.rows else math.nan
            text = f"L{int(level)}" if math.isfinite(level) else p.tag
            acc = p.values("accuracy") * 100
            x = p.mean("density") * 100
            marks.append((x, float(acc.mean()), spread(acc), text, "#333333", name))
    masked = [p for p in group.points if p.method == "magnitude"]
    for p in masked:
        acc = p.values("accuracy") * 100
        x = p.mean("density") * 100
        marks.append((x, float(acc.mean()), spread(acc), p.setting, colors["magnitude"], ""))
    ys = [m[1] for m in marks]
    dense = group.dense
    acc = dense.accuracy() if dense is not None else None
    floor = _outlier_floor(ys + ([acc.mean * 100] if acc else []))
    kept = [m for m in marks if floor is None or m[1] >= floor]
    for i, setting in enumerate(series):
        name = f"lottery {setting}".strip()
        line = [m for m in kept if m[5] == name]
        ax.errorbar(
            [m[0] for m in line],
            [m[1] for m in line],
            yerr=[m[2] for m in line],
            color=colors["lottery"],
            ls=_DASHES[i % len(_DASHES)],
            marker="o",
            ms=5,
            capsize=2.5,
            label=name,
        )
    squares = [m for m in kept if m[5] == ""]
    if squares:
        ax.errorbar(
            [m[0] for m in squares],
            [m[1] for m in squares],
            yerr=[m[2] for m in squares],
            fmt="s",
            ms=6,
            color=colors["magnitude"],
            capsize=2.5,
            label="magnitude pruning",
        )
    if acc is not None:
        ax.axhline(acc.mean * 100, color="black", lw=1.1, label="dense (mean)", zorder=1)
        if acc.half_width is not None:
            ax.axhspan(
                acc.low * 100, acc.high * 100, color="black", alpha=0.08, lw=0, label="dense 95% CI"
            )
    ax.set_xscale("log")
    xs = [m[0] for m in marks]
    ax.set_xlim(max(105.0, max(xs) * 1.05), min(xs) / 1.3)  # inverted: pruning goes right
    ticks = sorted({float(f"{x:.2g}") for x in [100.0, *xs]}, reverse=True)
    ticks = [t for i, t in enumerate(ticks) if i == 0 or ticks[i - 1] / t > 1.12]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.grid(axis="x", alpha=0.15)
    ys_kept = [m[1] for m in kept] + ([acc.mean * 100] if acc else [])  # the band may overflow
    low = min(y - m[2] for y, m in zip([m[1] for m in kept], kept, strict=True))
    low, high = min(low, *ys_kept), max(max(m[1] + m[2] for m in kept), *ys_kept)
    pad = max(0.12 * (high - low), 0.1)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("Weights remaining (%, log scale; pruning proceeds to the right)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{group.title}: IMP accuracy per pruning level")
    handles, _ = ax.get_legend_handles_labels()
    _bottom_legend(fig, handles, max_cols=3)
    bottom = ax.get_ylim()[0]
    placed: list[Any] = []
    points = [(m[0], m[1] + k * m[2]) for m in kept for k in (-1, 0, 1)]  # marker and bar ends
    for x, y, _sd, text, color, _name in marks:
        if floor is not None and y < floor:
            ax.plot([x], [bottom], marker="v", ms=8, color=color, clip_on=False, ls="", zorder=5)
            _place_label(ax, x, bottom, f"{text}: {y:.1f}% (off scale)", points, placed, color)
        elif text:
            _place_label(ax, x, y, text, points, placed, color)
    return fig


# Driver ---------------------------------------------------------------------------------------


def render_figures(data: ReportData, out_dir: Path) -> list[FigureEntry]:
    """Draw every figure the data supports under `out_dir`; skipped ones say why."""
    groups = model_groups(data.results, data.phases)
    methods = list(dict.fromkeys(p.method for g in groups for p in g.points))
    colors = method_colors(methods)
    entries: list[FigureEntry] = []
    if not groups:
        why = "no finished results yet"
        return [
            FigureEntry(kind, title, skipped=why)
            for kind, title in (
                ("pareto", "Pareto fronts"),
                ("curves", "Training curves"),
                ("spectra", "PCN spectra"),
                ("imp", "IMP: accuracy against density"),
            )
        ]
    with _style():
        datasets = list(dict.fromkeys(g.dataset for g in groups))
        caption = (
            "Each marker is one operating point (method and setting) at its mean over seeds; "
            "vertical bars: ±1 standard deviation of test accuracy over seeds; horizontal bars, "
            "where the cost varies by seed: its range over seeds. Dashed step line: the Pareto "
            "frontier (no other point is both cheaper and at least as accurate), whose points "
            "are labelled; faded points are dominated; stars mark the dense baselines."
        )
        for dataset in datasets:
            members = [g for g in groups if g.dataset == dataset]
            skipped = _pareto_skips([(g, p) for g in members for p in g.points])
            for cost in _COSTS:
                key, title = cost[0], cost[2]
                name = f"{dataset}: accuracy against {title}"
                if key in skipped:
                    entries.append(FigureEntry("pareto", name, skipped=skipped[key]))
                    continue
                fig = _pareto_figure(dataset, members, colors, cost)
                stem = f"pareto-{_slug(dataset)}-{_slug(title)}"
                entries.append(
                    FigureEntry("pareto", name, caption, stem, _save(fig, out_dir, stem))
                )
        kinds: list[tuple[str, str, Callable[[ModelGroup], Any], str, str]] = [
            (
                "curves",
                "training curves",
                lambda g: _curves_figure(data, g, colors),
                "no per-epoch records",
                "Mean over seeds. Left: test error (100 − accuracy) on a log scale, so small "
                "differences near the top stay visible next to a collapse; right: training loss "
                "per epoch and test loss where evaluated. Dotted vertical lines mark transform or "
                "pruning phases, "
                "coloured by method; after a rewind (IMP) the epoch count continues, so the "
                "x axis is the total training each method paid for.",
            ),
            (
                "spectra",
                "PCN spectra",
                lambda g: _spectra_figure(g, colors),
                "no pcn results with per-layer spectra",
                "Cumulative fraction of the input variance captured by the top-k principal "
                "components of each transformed layer's input, from the calibration data of the "
                "run itself (first seed); markers and vertical lines: the k each setting kept.",
            ),
            (
                "imp",
                "IMP accuracy against density",
                lambda g: _imp_figure(g, colors),
                "no lottery results",
                "Each lottery level prunes a further fraction of the remaining weights and "
                "retrains from the rewind point; markers: mean over seeds, bars ±1 s.d. The "
                "horizontal line is the dense accuracy (band: its 95% CI).",
            ),
        ]
        for kind, name, draw, absent, caption in kinds:
            for group in groups:
                title = f"{group.title}: {name}"
                fig = draw(group)
                if fig is None:
                    entries.append(FigureEntry(kind, title, skipped=absent))
                    continue
                stem = f"{kind}-{_slug(group.title)}"
                entries.append(FigureEntry(kind, title, caption, stem, _save(fig, out_dir, stem)))
    return entries


def write_figures(data: ReportData, out_dir: Path) -> list[Path]:
    """Draw the figures under `out_dir`/figures and write the manifest the HTML report reads."""
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("pareto", "curves", "spectra", "imp"):  # figures of an earlier report
        for old in fig_dir.glob(f"{kind}-*"):
            if old.suffix in {".svg", ".pdf", ".png"}:
                old.unlink()
    entries = render_figures(data, fig_dir)
    manifest = fig_dir / "figures.json"
    manifest.write_text(json.dumps([asdict(e) for e in entries], indent=1), encoding="utf-8")
    return [fig_dir / f for e in entries for f in e.files] + [manifest]
