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
- `place_label(ax, x, y, text, points, placed)`: annotate a point where it covers least.
- `si_tick(value)` / `minor_tick(value, pos)`: tick labels such as 25k, 1.5M; 2s and 5s on
  log axes. `log_if_wide(ax, axis, values)`: log scale when values span more than 10×.
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


def place_label(
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
