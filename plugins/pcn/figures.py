"""PCN's own report figures: the input spectra of the transformed layers, per (dataset, model).

`PCN.figures` calls `pcn_figures` (imported only when a report is drawn: it needs matplotlib).
It draws with the report's public helpers, `pcnbench_plugins.reporters.style`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from pcnbench.api import ReportFigure
from pcnbench_plugins.reporters.style import (
    DASHES,
    ModelGroup,
    bottom_legend,
    figure_per_group,
    number,
)

if TYPE_CHECKING:
    from pcnbench.api import ReportData

__all__ = ["pcn_figures", "pcn_layers"]

NAME = "pcn"  # the method whose results these figures draw
CAPTION = (
    "Cumulative fraction of the input variance captured by the top-k principal "
    "components of each transformed layer's input, from the calibration data of the "
    "run itself (first seed); markers and vertical lines: the k each setting kept."
)


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


def _spectra_figure(group: ModelGroup, colors: Mapping[str, str]) -> Figure | None:
    """Each transformed layer's cumulative input spectrum and the k each setting kept."""
    pcn = [p for p in group.points if p.method == NAME]
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
    point_style = {id(p): DASHES[i % len(DASHES)] for i, (p, _, _) in enumerate(per_point)}
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
                ax.plot(x, curve * 100, color=colors.get(NAME, "#0072B2"), lw=1.4)
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
    handles = [Line2D([], [], color=colors.get(NAME, "#0072B2"), label="cumulative spectrum")]
    handles += [
        Line2D(
            [],
            [],
            color=shades[j],
            marker="o",
            mec="black",
            mew=0.6,
            ls=point_style[id(p)],
            label=f"kept k: {p.setting or NAME}",
        )
        for j, (p, _, _) in enumerate(per_point)
    ]
    seeds = sorted({s for _, s, _ in per_point})
    fig.suptitle(
        f"{group.title}: input spectra of the PCN-transformed layers "
        f"(seed {', '.join(map(str, seeds))})"
    )
    bottom_legend(fig, handles)
    return fig


def pcn_figures(data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
    """One spectra figure per (dataset, model); skipped where no pcn result has spectra."""
    return figure_per_group(
        data,
        "pcn-spectra",
        "PCN spectra",
        lambda group: _spectra_figure(group, colors),
        CAPTION,
        "no pcn results with per-layer spectra",
    )
