"""The report's headline: one sentence, computed from the results, on what matches dense."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .points import ModelGroup, Point
from .stats import Estimate, at_least, best_of, beyond
from .tables import MINUS, fmt_times, measured_speedup

__all__ = ["TOLERANCE_PP", "Finding", "finding", "headline"]

TOLERANCE_PP = 0.5  # a reduced model "matches" dense when its mean Δ is at most this much lower


@dataclass(frozen=True)
class Finding:
    """The best reduced operating point of one (dataset, model) and how it compares to dense."""

    group: ModelGroup
    point: Point | None
    delta: Estimate | None
    compression: float
    speedup: float
    matches: bool  # mean Δ within the tolerance
    sentence: str
    confirmed: bool = False  # ... and so is the interval's lower end


def _pp(est: Estimate) -> str:
    text = f"Δ {est.mean * 100:+.2f}".replace("-", MINUS)
    if est.half_width is not None:
        text += f" ± {est.half_width * 100:.2f}"
    seeds = f"{est.n} seed{'s' if est.n != 1 else ''}"
    return f"{text} pp, {seeds}" + (", no interval" if est.half_width is None else "")


def _ratio(point: Point, key: str) -> float:
    cost = point.mean(key)
    dense = point.mean(f"dense_{key}")
    return dense / cost if cost else float("nan")


def _savings(compression: float, speedup: float, point: Point | None = None) -> str:
    text = f"{fmt_times(compression)} fewer parameters"
    if speedup >= 1.05 and abs(speedup - compression) / compression > 0.05:
        text += f" and {fmt_times(speedup)} fewer MACs"
    return text + (_measured(point) if point is not None else "")


def _measured(point: Point) -> str:
    """What the paired latency against dense says (nothing where it was not measured)."""
    faster, noisy = measured_speedup(point)
    if faster != faster:  # NaN: not measured
        return ""
    if noisy:
        return " (measured latency too noisy to compare)"
    if faster >= 1.05:
        return f" (measured: {fmt_times(faster)} faster than dense)"
    if faster <= 1 / 1.05:
        return f" (measured: {fmt_times(1 / faster)} slower than dense)"
    return " (measured: no faster than dense)"


def finding(group: ModelGroup, tolerance_pp: float = TOLERANCE_PP) -> Finding:
    """The smallest model within `tolerance_pp` of dense (mean paired Δ), else the closest one.

    It "matches" when the 95% interval's lower end is within the tolerance too; a match on the
    mean alone is reported with that caveat.
    """
    dense = group.dense
    candidates = []
    for point in group.points:
        if point.is_dense:
            continue
        delta = group.delta(point)
        compression = _ratio(point, "params")
        if delta is not None and beyond(compression, 1.0):
            candidates.append((point, delta, compression, _ratio(point, "macs")))
    if dense is None:
        text = "no dense baseline has finished yet, so nothing can be compared to it"
        return Finding(group, None, None, float("nan"), float("nan"), False, text)
    if not candidates:
        acc = dense.accuracy()
        assert acc is not None
        mean = f"{acc.mean * 100:.2f}" + (
            f" ± {acc.half_width * 100:.2f}" if acc.half_width is not None else ""
        )
        text = (
            f"only the dense baseline has results to compare: {mean}% test accuracy "
            f"({acc.n} seed{'s' if acc.n != 1 else ''})"
        )
        return Finding(group, None, None, float("nan"), float("nan"), False, text)
    tol = tolerance_pp / 100.0
    matching = [c for c in candidates if at_least(c[1].mean, -tol)]
    if matching:
        point, delta, compression, speedup = best_of(matching, lambda c: c[2], lambda c: c[1].mean)
        savings = _savings(compression, speedup, point)
        if delta.half_width is not None and at_least(delta.low, -tol):
            verb = "beats" if beyond(delta.low, 0.0) else "matches"
            text = f"{point.label} {verb} dense accuracy ({_pp(delta)}) with {savings}"
            return Finding(group, point, delta, compression, speedup, True, text, True)
        caveat = (
            "one seed gives no interval to confirm it"
            if delta.half_width is None
            else f"with {delta.n} seeds the interval cannot rule out a larger loss"
        )
        text = (
            f"{point.label} comes within {tolerance_pp:g} pp of dense accuracy on average "
            f"({_pp(delta)}) with {savings}, but {caveat}"
        )
        return Finding(group, point, delta, compression, speedup, True, text)
    point, delta, compression, speedup = best_of(candidates, lambda c: c[1].mean, lambda c: c[2])
    text = (
        f"no reduced model matches dense accuracy within {tolerance_pp:g} pp; the closest is "
        f"{point.label} ({_pp(delta)}) with {_savings(compression, speedup, point)}"
    )
    return Finding(group, point, delta, compression, speedup, False, text)


def headline(groups: list[ModelGroup], cells_total: int = 0, cells_done: int = 0) -> str:
    """One sentence: the most compressed match to dense over all groups (or why there is none)."""
    if not groups:
        if cells_total:
            return f"No results yet: {cells_done} of {cells_total} cells have finished."
        return "No results yet."
    findings = [finding(g) for g in groups]
    matched = [f for f in findings if f.matches]
    if matched:
        best = best_of(matched, lambda f: f.compression)
    else:
        compared = [f for f in findings if f.point is not None]
        with_dense = [f for f in findings if f.group.dense is not None]
        if compared:
            best = best_of(compared, lambda f: f.delta.mean if f.delta else -1.0)
        elif with_dense:
            return _baselines_only([f.group for f in with_dense])
        else:
            best = findings[0]
    prefix = f"On {best.group.title}, " if len(groups) > 1 else ""
    sentence = prefix + best.sentence
    if sentence.split(" ", 1)[0] in {"no", "only"}:  # method names keep their case
        sentence = sentence[0].upper() + sentence[1:]
    return sentence + "."


def _acc_text(point: Point) -> str:
    acc = point.accuracy()
    assert acc is not None
    text = f"{acc.mean * 100:.2f}"
    if acc.half_width is not None:
        text += f" ± {acc.half_width * 100:.2f}"
    return f"{text}% test accuracy ({acc.n} seed{'s' if acc.n != 1 else ''})"


def _baselines_only(groups: list[ModelGroup]) -> str:
    """No reduced model has finished: compare the dense baselines with each other instead."""
    dense = [(g, g.dense) for g in groups if g.dense is not None]
    best_g, best = best_of(dense, lambda gd: gd[1].accuracy().mean)
    text = f"Only dense baselines have results so far: {best_g.title} reaches {_acc_text(best)}"
    smallest_g, smallest = best_of(dense, lambda gd: -gd[1].mean("params"))
    if smallest is not best:
        ratio = best.mean("params") / smallest.mean("params")
        text += (
            f"; {smallest_g.model} reaches {_acc_text(smallest)} with {fmt_times(ratio)} "
            "fewer parameters"
        )
    return text + "."


def sharing_sentence(results: pd.DataFrame) -> str | None:
    """How much training the shared dense trunk saved, or None when the run did not share."""
    needed = {"cell_id", "train_time_s", "incurred_time_s", "trunk_reused_epochs"}
    if not needed <= set(results.columns):
        return None
    rows = results.dropna(subset=["train_time_s", "incurred_time_s"])
    if rows.empty:
        return None
    # a cell's rows are cumulative (IMP levels): its last row holds its whole cost
    per_cell = rows.groupby("cell_id")[["train_time_s", "incurred_time_s", "trunk_reused_epochs"]]
    last = per_cell.max()
    alone, spent = float(last["train_time_s"].sum()), float(last["incurred_time_s"].sum())
    reused = float(last["trunk_reused_epochs"].fillna(0).sum())
    if alone <= 0 or reused <= 0:
        return None
    saved = max(alone - spent, 0.0)
    return (
        f"The shared dense trunk saved {saved:.1f} s of {alone:.1f} s of training "
        f"({100 * saved / alone:.0f}%): cells reused {reused:g} epochs of dense training from "
        "cells with the same dataset, model, seed and recipe. Tables and figures charge every "
        "cell as if it had run alone."
    )
