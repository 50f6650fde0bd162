"""The lottery method's own report figure: IMP accuracy per pruning level, per (dataset, model).

`Lottery.figures` calls `imp_figures` (imported only when a report is drawn: it needs
matplotlib). One-shot magnitude pruning, where the suite has it, is drawn beside the levels,
and the dense baseline's accuracy as a line. It draws with the report's public helpers,
`pcnbench_plugins.reporters.style`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure

from pcnbench.api import ReportFigure
from pcnbench_plugins.reporters.style import (
    DASHES,
    ModelGroup,
    Point,
    bottom_legend,
    figure_per_group,
    number,
    outlier_floor,
    place_label,
)

if TYPE_CHECKING:
    from pcnbench.api import ReportData

__all__ = ["imp_figures"]

NAME = "lottery"  # the method whose results these figures draw
BESIDE = "magnitude"  # one-shot pruning to the same densities, for comparison
CAPTION = (
    "Each lottery level prunes a further fraction of the remaining weights and "
    "retrains from the rewind point; markers: mean over seeds, bars ±1 s.d. The "
    "horizontal line is the dense accuracy (band: its 95% CI)."
)


def _imp_figure(group: ModelGroup, colors: Mapping[str, str]) -> Figure | None:
    """Lottery accuracy per level against weights remaining, magnitude pruning and dense beside."""
    lottery = [p for p in group.points if p.method == NAME]
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
        series.setdefault(point.base_setting, []).append(point)
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
    masked = [p for p in group.points if p.method == BESIDE]
    for p in masked:
        acc = p.values("accuracy") * 100
        x = p.mean("density") * 100
        marks.append(
            (x, float(acc.mean()), spread(acc), p.setting, colors.get(BESIDE, "#D55E00"), "")
        )
    ys = [m[1] for m in marks]
    dense = group.dense
    acc = dense.accuracy() if dense is not None else None
    floor = outlier_floor(ys + ([acc.mean * 100] if acc else []))
    kept = [m for m in marks if floor is None or m[1] >= floor]
    for i, setting in enumerate(series):
        name = f"lottery {setting}".strip()
        line = [m for m in kept if m[5] == name]
        ax.errorbar(
            [m[0] for m in line],
            [m[1] for m in line],
            yerr=[m[2] for m in line],
            color=colors.get(NAME, "#009E73"),
            ls=DASHES[i % len(DASHES)],
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
            color=colors.get(BESIDE, "#D55E00"),
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
    bottom_legend(fig, handles, max_cols=3)
    bottom = ax.get_ylim()[0]
    placed: list[Any] = []
    points = [(m[0], m[1] + k * m[2]) for m in kept for k in (-1, 0, 1)]  # marker and bar ends
    for x, y, _sd, text, color, _name in marks:
        if floor is not None and y < floor:
            ax.plot([x], [bottom], marker="v", ms=8, color=color, clip_on=False, ls="", zorder=5)
            place_label(ax, x, bottom, f"{text}: {y:.1f}% (off scale)", points, placed, color)
        elif text:
            place_label(ax, x, y, text, points, placed, color)
    return fig


def imp_figures(data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
    """One IMP figure per (dataset, model); skipped where the group has no lottery results."""
    return figure_per_group(
        data,
        "lottery-imp",
        "IMP accuracy against density",
        lambda group: _imp_figure(group, colors),
        CAPTION,
        "no lottery results",
    )
