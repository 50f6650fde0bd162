"""Pareto figures: test accuracy against each cost, one figure per dataset and cost."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from pcnbench.api import ReportFigure

from .points import BASELINE, ModelGroup, Point, dataset_references
from .stats import pareto_front
from .style import (
    MODEL_MARKERS,
    bottom_legend,
    log_if_wide,
    outlier_floor,
    pad_limits,
    place_label,
    si_tick,
    slug,
)

__all__ = ["COSTS", "pareto_figures"]

CAPTION = (
    "Each marker is one operating point (method and setting) at its mean over seeds; "
    "vertical bars: ±1 standard deviation of test accuracy over seeds; horizontal bars, "
    "where the cost varies by seed: its range over seeds. Dashed step line: the Pareto "
    "frontier (no other point is both cheaper and at least as accurate), whose points "
    "are labelled; faded points are dominated; stars mark the dense baselines."
)
REFERENCES_NOTE = (
    " Hollow grey diamonds: published results the suite lists (references), at their reported "
    "accuracy and size; they are not operating points of this benchmark and never enter the "
    "frontier."
)
REFERENCE_COLOR = "#444444"
# The costs a reference can be placed on: its `params` and `macs`.
REFERENCE_COSTS = ("params", "macs")


COSTS = [
    # (column, axis label, what it is called in titles, per-seed spread shown as x bars)
    ("params", "Parameters needed at inference (count)", "parameters", False),
    ("macs", "Inference MACs per sample", "inference MACs", False),
    ("train_energy_j", "Training energy (J)", "training energy", True),
    ("train_time_s", "Training time (s)", "training time", True),
    # measured latency as the paired ratio against dense (absolute figures follow the load)
    (
        "latency_ratio",
        "Latency relative to dense (paired, median of reduced / dense)",
        "measured latency",
        True,
    ),
]


def _point_cost(point: Point, key: str) -> pd.Series:
    if key != "train_energy_j":
        return point.values(key)
    measured = point.values("train_energy_j")
    estimate = point.values("train_energy_j_est")
    # A point is either measured on every seed or estimated: never a mix of the two.
    return measured if measured.notna().all() else estimate


def _estimated(point: Point) -> bool:
    """Whether a point's training energy is an estimate (some seed has no measured value)."""
    return bool(point.values("train_energy_j").isna().any())


def _estimate_methods(points: list[Point]) -> str:
    """How the points' energy estimates were made, as the results say (e.g. a meter's model)."""
    found: list[str] = []
    for p in points:
        for name in ("energy_est_method", "energy_estimate_method"):
            values = p.rows.get(name)
            if values is not None:
                found += [str(v) for v in values.dropna() if str(v)]
    return "; ".join(dict.fromkeys(found))


def _all_estimated_reason(points: list[Point]) -> str:
    """Why an energy figure whose every point is an estimate is left out."""
    how = _estimate_methods(points)
    return (
        "left out: no training energy was measured (no energy meter on this machine); every "
        "value is an estimate" + (f" ({how})" if how else "") + ", i.e. training time × a "
        "modelled average power, so the figure would repeat accuracy against training time"
    )


MIXED_ENERGY_NOTE = (
    " Training energy: filled markers are measured; hollow markers are estimates "
    "(training time × a modelled average power{how}), not measurements."
)


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
    for key, _label, _title, _spread in COSTS:
        if any(_point_cost(p, key).notna().all() for _, p in points):
            continue
        why = "no values"
        if key == "latency_ratio":
            why = "not measured (metering off, or results stored before paired latency)"
        if key == "train_energy_j":
            why = "unmetered"
            reasons = {r for _, p in points for r in p.energy_reasons()}
            if reasons:
                why += f" ({'; '.join(sorted(reasons))})"
        skipped[key] = why
    drawn = [p for _, p in points if _point_cost(p, "train_energy_j").notna().all()]
    if "train_energy_j" not in skipped and all(_estimated(p) for p in drawn):
        skipped["train_energy_j"] = _all_estimated_reason(drawn)
    return skipped


def _placed_references(groups: list[ModelGroup], key: str) -> list[tuple[float, float, str]]:
    """(x, accuracy %, label) of each of the dataset's references that has quantity `key`."""
    if key not in REFERENCE_COSTS:
        return []
    refs = dataset_references(groups).get(groups[0].dataset, ()) if groups else ()
    out = []
    for ref in refs:
        x = getattr(ref, key, None)
        if x is not None:
            out.append((float(x), float(ref.accuracy) * 100, str(ref.label)))
    return out


def _pareto_figure(
    dataset: str, groups: list[ModelGroup], colors: dict[str, str], cost: tuple
) -> Any:
    """Accuracy against one cost for every operating point of one dataset (and its references)."""
    key, label, title, spread = cost
    refs = _placed_references(groups, key)
    points = [(g, p) for g in groups for p in g.points]
    models = list(dict.fromkeys(g.model for g in groups))
    markers = {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in enumerate(models)}
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
        if key == "latency_ratio":  # hollow: a ratio too noisy to compare
            estimated = bool((point.values("latency_noisy").fillna(0) > 0).any())
        styles.append((group, point, estimated))
    # Hollow markers tell estimates from measurements, where a figure holds both.
    mixed = len({estimated for _, _, estimated in styles}) > 1
    front = set(pareto_front(xs, ys))
    short = _short_labels(points)
    floor = outlier_floor(ys)
    labels: list[tuple[float, float, str, str]] = []
    below: list[tuple[float, float, str, str]] = []  # (x, accuracy, label, colour) off the axis
    for i, (group, point, hollow) in enumerate(styles):
        on_front = i in front
        color = colors[point.method]
        if floor is not None and ys[i] < floor:
            text = short[id(point)] if not point.is_dense else point.method
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
            text = f"{point.method} {group.model}" if len(models) > 1 else point.method
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
    for x, y, _text in refs:
        # hollow, grey, outside the frontier: a published figure beside ours, not one of ours
        ax.plot([x], [y], marker="D", ms=8, ls="", mfc="none", mec=REFERENCE_COLOR, mew=1.4)
    ref_xs, ref_ys = [r[0] for r in refs], [r[1] for r in refs]
    logx = log_if_wide(ax, "x", xs + ref_xs)
    if key == "train_energy_j":
        label = _energy_axis_label([p for _, p, _ in styles])
    if key == "latency_ratio" and mixed:
        label += "; hollow markers: noisy"
    elif key == "latency_ratio" and styles and styles[0][2]:
        label += "; all noisy"
    ax.set_xlabel(label + (", log scale" if logx else ""))
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{dataset}: test accuracy against {title}")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: si_tick(v)))
    kept = [i for i, y in enumerate(ys) if floor is None or y >= floor]
    pad_limits(
        ax,
        xs + ref_xs,
        [ys[i] for i in kept] + ref_ys,
        logx,
        xerr + [(0.0, 0.0)] * len(refs),
        [yerr[i] for i in kept] + [0.0] * len(refs),
    )
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
            marker="*" if m == BASELINE else "o",
            ls="",
            ms=10 if m == BASELINE else 7,
            label=m,
        )
        for m in dict.fromkeys(p.method for _, p in points)
    ]
    if len(models) > 1 and any(not p.is_dense for _, p in points):
        handles += [
            Line2D([], [], color="#666666", marker=markers[m], ls="", ms=7, label=m) for m in models
        ]
    if key == "train_energy_j" and mixed:
        handles.append(
            Line2D(
                [],
                [],
                color="#555555",
                marker="o",
                mfc="white",
                ls="",
                ms=7,
                label="energy estimated (hollow)",
            )
        )
    if refs:
        handles.append(
            Line2D(
                [],
                [],
                color=REFERENCE_COLOR,
                marker="D",
                mfc="none",
                ls="",
                ms=7,
                label="published (reference)",
            )
        )
    handles.append(Line2D([], [], color="#555555", ls="--", lw=1.1, label="Pareto frontier"))
    handles.append(
        Line2D([], [], color="#888888", marker="o", ls="", alpha=0.3, label="dominated (faded)")
    )
    bottom_legend(fig, handles)
    # Labels go last: their placement needs the final axes box and limits.
    placed: list[Any] = []
    labels += [(x, y, f"{text} (published)", REFERENCE_COLOR) for x, y, text in refs]
    obstacles = [(x, y) for x, y in zip(xs + ref_xs, ys + ref_ys, strict=True)]
    obstacles += [(x, y + e) for x, y, e in zip(xs, ys, yerr, strict=True) if e]
    obstacles += [(x, y - e) for x, y, e in zip(xs, ys, yerr, strict=True) if e]
    for x, y, text, color in labels:
        place_label(ax, x, y, text, obstacles, placed, color)
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


def pareto_figures(groups: list[ModelGroup], colors: dict[str, str]) -> list[ReportFigure]:
    """Accuracy against each cost, per dataset; a cost no point has is skipped with the reason."""
    out = []
    for dataset in dict.fromkeys(g.dataset for g in groups):
        members = [g for g in groups if g.dataset == dataset]
        skipped = _pareto_skips([(g, p) for g in members for p in g.points])
        for cost in COSTS:
            key, title = cost[0], cost[2]
            name = f"pareto-{slug(dataset)}-{slug(title)}"
            heading = f"{dataset}: accuracy against {title}"
            if key in skipped:
                out.append(ReportFigure(name, heading, "", skipped=skipped[key]))
                continue
            figure = _pareto_figure(dataset, members, colors, cost)
            caption = CAPTION
            if _placed_references(members, key):
                caption += REFERENCES_NOTE
            if key == "train_energy_j":
                drawn = [p for g in members for p in g.points]
                drawn = [p for p in drawn if _point_cost(p, key).notna().all()]
                estimates = [p for p in drawn if _estimated(p)]
                if estimates:
                    how = _estimate_methods(estimates)
                    caption += MIXED_ENERGY_NOTE.format(how=f": {how}" if how else "")
            out.append(ReportFigure(name, heading, caption, figure=figure))
    return out
