"""The report's figure style and plotting helpers: public, for methods' own figures.

A method's `figures(data, colors)` (see `pcnbench.api.Method`) may import this module to draw
in the report's style and group results the way the tables do. It is the one public module of
`pcnbench_plugins.reporters`; the names below stay stable, the package's other modules may
change:

- `operating_points(data)`: the report's (dataset, model) groups (`ModelGroup`) of operating
  points (`Point`: a method setting over seeds, with `values`, `mean`, `accuracy`, `setting`,
  `base_setting`, `tag`, `is_dense`); `BASELINE` names the method others are compared to;
  `number(value)` reads a cell value as a float (NaN when it is not a number).
- `DASHES`, `MODEL_MARKERS`: line styles and markers the built-in figures cycle through.
- `bottom_legend(fig, handles)`: a legend under the axes, with room made for it.
- `place_label(ax, x, y, text, points, placed)`: annotate a point where its label overlaps no
  earlier one and covers fewest points (deterministic; a leader line where it is set off).
- `si_tick(value)` / `minor_tick(value, pos)` / `log_tick(value, pos)`: tick labels such as
  25k, 1.5M; 2s and 5s on log axes; one style for every tick of a log axis.
  `log_if_wide(ax, axis, values)`: log scale when values span more than 10×.
- `tidy_ticks(fig)`: no overlapping tick labels, one label style on log axes, at least two
  labelled ticks per axis. The report applies it to every figure it saves (methods' too).
- `outlier_floor(ys)`: an accuracy below which points would squash the axis (draw them on
  the edge instead). `pad_limits(...)`: room so markers and error bars are not clipped.
- `slug(text)`: text made safe for a figure name (`ReportFigure.name`).

The report draws and saves every figure, methods' included, inside `style()`: figures need not
enter it themselves, and should be `matplotlib.figure.Figure` objects (not pyplot's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from pcnbench.api import ReportFigure

from .points import BASELINE, ModelGroup, Point, number, operating_points

if TYPE_CHECKING:
    from pcnbench.api import ReportData

__all__ = [
    "BASELINE",
    "BASELINE_COLOR",
    "DASHES",
    "MODEL_MARKERS",
    "PALETTE",
    "STYLE",
    "ModelGroup",
    "Point",
    "bottom_legend",
    "figure_per_group",
    "is_wide",
    "log_if_wide",
    "log_tick",
    "method_colors",
    "minor_tick",
    "number",
    "operating_points",
    "outlier_floor",
    "pad_limits",
    "place_label",
    "si_tick",
    "slug",
    "style",
    "tidy_ticks",
]

# Okabe–Ito: distinguishable with colour-blindness and in greyscale print; the baseline is black.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B"]
BASELINE_COLOR = "#000000"
MODEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
DASHES = ["-", "--", ":", "-."]

STYLE = {
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


@contextmanager
def style() -> Iterator[None]:
    """The report's matplotlib settings, for drawing and saving inside the block."""
    with matplotlib.rc_context(STYLE):
        yield


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, in the order given (the suite's); the baseline always black."""
    colors: dict[str, str] = {}
    i = 0
    for name in dict.fromkeys(methods):
        if name == BASELINE:
            colors[name] = BASELINE_COLOR
        else:
            colors[name] = PALETTE[i % len(PALETTE)]
            i += 1
    return colors


def slug(text: str) -> str:
    """`cifar10 · resnet(depth=20)` → `cifar10-resnet-depth-20`: safe in a file name."""
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:80]


def bottom_legend(fig: Figure, handles: list[Any], max_cols: int = 4) -> None:
    """A legend under the axes, in as many columns as fit the figure's width, and room for it."""
    renderer = _renderer(fig)
    legend = None
    for ncol in range(min(max_cols, len(handles)), 0, -1):
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
        if legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            break
    assert legend is not None
    height = legend.get_window_extent(renderer).height / fig.bbox.height
    # one tight-layout pass, then room for the legend below: tight_layout with a `rect` runs
    # its (text-measuring, slow) pass twice
    fig.tight_layout()
    params = fig.subplotpars
    room = height + 0.01
    fig.subplots_adjust(bottom=params.bottom + room * (1 - params.bottom))


def is_wide(values: list[float]) -> bool:
    """Whether the positive finite values span more than 10×."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    return len(pos) >= 2 and max(pos) / min(pos) > 10


def log_if_wide(ax: Any, axis: str, values: list[float]) -> bool:
    """Log scale when the positive values span more than 10×; returns whether it did."""
    if is_wide(values):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    return False


def _renderer(fig: Figure) -> Any:
    """The Agg renderer of `fig`, reused across calls (text extents are measured with it)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    return canvas.get_renderer()


# Where a label may go around its point: rings of 16 directions, nearest first (points).
_RADII = (9, 15, 24, 36, 52, 72, 100, 140)
_ANGLES = (-45, 45, -135, 135, 0, 180, -90, 90, -22.5, 22.5, -157.5, 157.5, -67.5, -112.5, 67.5)
_DIRECTIONS = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (*_ANGLES, 112.5)]


def _align(dx: float, dy: float) -> tuple[str, str]:
    """Text alignment that puts a label on the far side of its offset from the point."""
    ha = "left" if dx > 0.3 else "right" if dx < -0.3 else "center"
    va = "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center"
    return ha, va


def place_label(
    ax: Any,
    x: float,
    y: float,
    text: str,
    points: list[tuple[float, float]],
    placed: list[Any],
    color: str = "#333333",
) -> None:
    """Annotate (x, y) where the text overlaps no earlier label and covers fewest points.

    Deterministic: candidate spots on rings around the point, nearest first, inside the axes;
    a leader line joins a label set off from its point. `placed` collects the display-space
    boxes of the labels placed so far (pass the same list for every label of one figure).
    """
    from matplotlib.transforms import Bbox

    renderer = _renderer(ax.figure)
    scale = ax.figure.dpi / 72.0
    px, py = ax.transData.transform((x, y))
    others = [ax.transData.transform(p) for p in points if p != (x, y)]
    box = ax.get_window_extent(renderer)
    note = ax.annotate(
        text,
        (x, y),
        xytext=(0, 0),
        textcoords="offset points",
        fontsize=7.5,
        color=color,
        ha="left",
        va="bottom",
        arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5, "shrinkB": 5},
    )
    size = Text.get_window_extent(note, renderer)  # the text alone, not its leader line
    w, h = size.width, size.height
    margin = 4 * scale  # about a marker's radius
    pad = 1.5 * scale  # clear space between two labels
    best = None
    for r in _RADII:
        for cx, cy in _DIRECTIONS:
            dx, dy = r * cx, r * cy
            ha, va = _align(cx, cy)
            ax0 = px + dx * scale - {"left": 0.0, "center": w / 2, "right": w}[ha]
            ay0 = py + dy * scale - {"bottom": 0.0, "center": h / 2, "top": h}[va]
            bbox = Bbox.from_bounds(ax0, ay0, w, h)
            clashes = sum(bbox.padded(pad).overlaps(other) for other in placed)
            hits = sum(
                bbox.x0 - margin <= ox <= bbox.x1 + margin
                and bbox.y0 - margin <= oy <= bbox.y1 + margin
                for ox, oy in others
            )
            near = (
                bbox.x0 - margin <= px <= bbox.x1 + margin
                and bbox.y0 - margin <= py <= bbox.y1 + margin
            )
            outside = bbox.x0 < box.x0 or bbox.x1 > box.x1 or bbox.y0 < box.y0 or bbox.y1 > box.y1
            penalty = 1000 * clashes + 200 * outside + 3 * hits + 3 * near
            cost = penalty + 0.05 * r
            if best is None or cost < best[0]:
                best = (cost, penalty, dx, dy, ha, va, bbox)
        if best is not None and best[1] == 0:  # free, inside, clear of points: go no further
            break
    assert best is not None
    _, _, dx, dy, ha, va, bbox = best
    note.set_position((dx, dy))
    note.set_ha(ha)
    note.set_va(va)
    placed.append(bbox)


def si_tick(value: float) -> str:
    """Tick labels such as 250, 25k, 1.5M (no offsets or exponents to decode)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def minor_tick(value: float, _pos: int) -> str:
    """Label the 2s and 5s between decades, so a narrow log axis still has numbers."""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return (
        f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""
    )


def log_tick(value: float, _pos: int | None = None) -> str:
    """One tick label style for log axes, majors and minors alike: 0.05, 3, 250, 30k, 1.5M."""
    return si_tick(float(f"{value:.3g}"))


def _nice(value: float) -> int:
    """How round a log-axis tick is: 0 for 1×10ⁿ, 1 for 2× and 5×, 2 for 3×, 3 otherwise."""
    if value <= 0 or not math.isfinite(value):
        return 3
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return {1.0: 0, 10.0: 0, 2.0: 1, 5.0: 1, 3.0: 2}.get(mantissa, 3)


def _in_view(axis: Any, locs: Sequence[float]) -> list[int]:
    """Indices of `locs` inside the axis's view limits (ends included)."""
    lo, hi = sorted(axis.get_view_interval())
    slack = (hi - lo) * 1e-9
    return [i for i, v in enumerate(locs) if lo - slack <= v <= hi + slack]


def _tick_boxes(axis: Any, minor: bool, renderer: Any) -> list[tuple[int, float, str, Any]]:
    """(index, location, text, display box) of each labelled tick inside the view."""
    locs = list(axis.get_minorticklocs() if minor else axis.get_majorticklocs())
    if minor:
        axis.get_minorticklabels()  # sets the ticks' positions and texts
        ticks = axis.get_minor_ticks(len(locs))
    else:
        axis.get_majorticklabels()
        ticks = axis.get_major_ticks(len(locs))
    out = []
    for i in _in_view(axis, locs):
        tick = ticks[i]
        labels = [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text()]
        if labels:
            box = labels[0].get_window_extent(renderer)
            out.append((i, float(locs[i]), labels[0].get_text(), box))
    return out


def _fallback_ticks(axis: Any) -> list[float]:
    """Round values inside the view, for an axis that would show fewer than two labels.

    Multiples of the coarsest step (100, 50, 20, 10, 5, 2 or 1 units of a tenth of the span's
    order of magnitude) that gives at least two: 10 and 15 on a log axis from 9.4 to 15.5.
    """
    lo, hi = sorted(float(v) for v in axis.get_view_interval())
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    e = math.floor(math.log10(hi - lo)) - 1
    first, last = math.ceil(lo / 10**e - 1e-9), math.floor(hi / 10**e + 1e-9)
    for step in (100, 50, 20, 10, 5, 2, 1):
        values = [float(f"{n}e{e}") for n in range(first, last + 1) if n % step == 0]
        if len(values) >= 2:
            return values
    return []


def _choose(axis: Any, renderer: Any, pad: float, log: bool) -> tuple[dict, dict]:
    """index → text of the major and of the minor tick labels to keep: none overlapping."""
    major = _tick_boxes(axis, False, renderer)
    minor = _tick_boxes(axis, True, renderer)
    if log and len(major) >= 2:
        minor = []  # decades are labelled: the ticks between them need no numbers
    kept: list[Any] = []
    chosen: tuple[dict, dict] = ({}, {})
    # Majors from the low end up, then minors roundest first, each where it overlaps nothing.
    ranked = sorted(major, key=lambda m: m[1])
    ranked += sorted(minor, key=lambda m: (_nice(m[1]) if log else 0, m[1]))
    for n, (i, _loc, text, box) in enumerate(ranked):
        if not any(box.padded(pad).overlaps(k) for k in kept):
            kept.append(box)
            chosen[n >= len(major)][i] = text
    return chosen


def _tidy_axis(axis: Any, renderer: Any, pad: float) -> None:
    """Labels on one axis that do not overlap, in one style on log axes; at least two."""
    from matplotlib.ticker import (
        FixedFormatter,
        FixedLocator,
        FuncFormatter,
        LogFormatter,
        NullFormatter,
    )

    log = axis.get_scale() == "log"
    if log:  # matplotlib's own log labels (3×10⁴) would mix with ours (100k): one style
        if isinstance(axis.get_major_formatter(), LogFormatter):
            axis.set_major_formatter(FuncFormatter(log_tick))
        if isinstance(axis.get_minor_formatter(), LogFormatter):
            axis.set_minor_formatter(FuncFormatter(log_tick))
    major, minor = _choose(axis, renderer, pad, log)
    if len(major) + len(minor) < 2:  # one label (or none) says nothing about the scale
        values = _fallback_ticks(axis)
        if len(values) >= 2:
            axis.set_major_locator(FixedLocator(values))
            axis.set_major_formatter(FuncFormatter(log_tick if log else lambda v, _p: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
            major, minor = _choose(axis, renderer, pad, log)
    for is_minor, keep in ((False, major), (True, minor)):
        locs = [
            float(v) for v in (axis.get_minorticklocs() if is_minor else axis.get_majorticklocs())
        ]
        if not locs:
            continue
        labels = [keep.get(i, "") for i in range(len(locs))]
        if is_minor:
            axis.set_minor_locator(FixedLocator(locs))
            axis.set_minor_formatter(FixedFormatter(labels))
        else:
            axis.set_major_locator(FixedLocator(locs))
            axis.set_major_formatter(FixedFormatter(labels))


def tidy_ticks(fig: Figure) -> None:
    """Make every axis of `fig` readable: no overlapping tick labels, one label style on log
    axes (no 3×10⁴ beside 100k), minor labels only where decades leave fewer than two, and
    at least two labelled ticks. Call it last, when limits and layout are final (the report
    calls it on every figure it saves, methods' included)."""
    renderer = _renderer(fig)
    for ax in fig.axes:
        if not ax.axison:
            continue
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_visible():
                size = axis.get_ticklabels()[0].get_fontsize() if axis.get_ticklabels() else 9
                # at least 0.6 em between neighbouring labels (half of it around each box)
                _tidy_axis(axis, renderer, 0.3 * size * fig.dpi / 72.0)


def outlier_floor(ys: list[float]) -> float | None:
    """An accuracy below which points are collapsed outliers that would squash the axis.

    Points more than 3 interquartile ranges (at least 0.5 pp) under the lower quartile; None
    when there are none (or too few points to tell).
    """
    if len(ys) < 4:
        return None
    q1, q3 = np.percentile(ys, [25, 75])
    floor = q1 - 3 * max(q3 - q1, 0.5)
    return floor if min(ys) < floor else None


def pad_limits(
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


def figure_per_group(
    data: ReportData,
    name: str,
    title: str,
    draw: Callable[[ModelGroup], Figure | None],
    caption: str,
    skipped: str,
) -> list[ReportFigure]:
    """One figure per (dataset, model) of the results: `draw(group)`, or `skipped` where it
    returns None; files are named `<name>-<dataset-model>`, titles `<group>: <title>`."""
    out = []
    for group in operating_points(data):
        stem, heading = f"{name}-{slug(group.title)}", f"{group.title}: {title}"
        figure = draw(group)
        if figure is None:
            out.append(ReportFigure(stem, heading, "", skipped=skipped))
        else:
            out.append(ReportFigure(stem, heading, caption, figure=figure))
    return out
