"""Meter windows around phases, and turning readings into labelled result columns."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

from pcnbench.contracts import Meter, Reading

__all__ = [
    "MeterSet",
    "apportion_estimates",
    "energy_columns",
    "reading_columns",
    "scale_estimates",
    "subtract",
]

SHORT_WINDOW_S = 1.0


class MeterSet:
    """The meters of a run, opened and closed together; a failing meter never stops training."""

    def __init__(self, meters: Sequence[Meter] = ()) -> None:
        self.meters = list(meters)

    def __bool__(self) -> bool:
        return bool(self.meters)

    def start(self, nested: bool = False, kind: str | None = None) -> list[tuple[Meter, Any]]:
        """Open a window on every meter that meters this `kind` of phase (and nests, if nested)."""
        handles = []
        for meter in self.meters:
            if nested and not meter.nested:
                continue
            if kind is not None and meter.kinds is not None and kind not in meter.kinds:
                continue
            try:
                handles.append((meter, meter.start()))
            except Exception as exc:
                handles.append((meter, exc))
        return handles

    def stop(self, handles: list[tuple[Meter, Any]], seconds: float) -> list[Reading]:
        """Close the windows; flag windows too short to trust; a meter error becomes a label."""
        readings: list[Reading] = []
        for meter, handle in handles:
            try:
                if isinstance(handle, Exception):
                    raise handle
                got = meter.stop(handle)
            except Exception as exc:
                got = [
                    Reading(
                        meter.name,
                        math.nan,
                        "unmetered",
                        note=f"meter '{meter.name}' failed: {type(exc).__name__}: {exc}",
                    )
                ]
            for r in got:
                if seconds < SHORT_WINDOW_S and not math.isnan(r.joules) and not r.estimate:
                    note = "; ".join(x for x in (r.note, f"window {seconds:.2f} s < 1 s") if x)
                    r = Reading(r.component, r.joules, r.method, r.estimate, note, r.extra)
                readings.append(r)
        return readings

    def prepare(self) -> None:
        """One-time setup of every meter (errors surface later as unmetered readings)."""
        for meter in self.meters:
            with contextlib.suppress(Exception):
                meter.prepare()

    def close(self) -> None:
        """Release every meter's resources."""
        for meter in self.meters:
            with contextlib.suppress(Exception):
                meter.close()


def _additive(key: str) -> bool:
    return key.endswith(("_j", "_kg", "_kwh"))


def subtract(outer: list[Reading], inner: list[Reading]) -> list[Reading]:
    """`outer` minus the energy of a window nested in it (peaks and labels stay the outer's).

    Estimates are left alone here: see `scale_estimates`.
    """
    taken: dict[tuple[str, str, bool], Reading] = {
        (r.component, r.method, r.estimate): r for r in inner
    }
    out = []
    for r in outer:
        sub = taken.get((r.component, r.method, r.estimate))
        if sub is None or r.estimate:
            out.append(r)
            continue
        joules = r.joules - sub.joules if not math.isnan(r.joules) else r.joules
        extra = {k: (v - sub.extra.get(k, 0.0) if _additive(k) else v) for k, v in r.extra.items()}
        out.append(Reading(r.component, joules, r.method, r.estimate, r.note, extra))
    return out


def scale_estimates(readings: list[Reading], fraction: float) -> list[Reading]:
    """Estimates (power × time models) scaled to the `fraction` of the window kept.

    A modelled figure of a short nested window is not exactly its share of the outer one, so
    subtracting would leave noise (even negative joules); scaling by time is what the model says.
    """
    fraction = min(max(fraction, 0.0), 1.0)
    out = []
    for r in readings:
        if r.estimate and not math.isnan(r.joules):
            extra = {k: (v * fraction if _additive(k) else v) for k, v in r.extra.items()}
            r = Reading(r.component, r.joules * fraction, r.method, r.estimate, r.note, extra)
        out.append(r)
    return out


def apportion_estimates(
    results: list[dict[str, Any]], cell_readings: list[Reading], window_s: float
) -> None:
    """Fill `train_energy_j_est` / `co2_kg_est` of results that have none from the cell window.

    An estimate meter that only meters whole cells (one tracker per cell keeps it cheap) gives
    the cell's modelled average power; a result's training estimate is that power × its
    `train_time_s`, which is what a power × time model would say of the training phases.
    """
    estimates = [r for r in cell_readings if r.estimate and not math.isnan(r.joules)]
    if not estimates or window_s <= 0:
        return
    watts = sum(r.joules for r in estimates) / window_s
    co2_per_s = sum(r.extra.get("co2_kg", 0.0) for r in estimates) / window_s
    methods = "+".join(sorted({r.method for r in estimates}))
    for row in results:
        if not math.isnan(row.get("train_energy_j_est", math.nan)):
            continue
        seconds = row.get("train_time_s") or 0.0
        row["train_energy_j_est"] = watts * seconds
        row["co2_kg_est"] = co2_per_s * seconds
        row["energy_est_method"] = f"{methods}: cell-average power × train_time_s"


def reading_columns(readings: Iterable[Reading]) -> dict[str, Any]:
    """Flat columns for a phase row: <component>_energy_j / _method / _note, estimates as _est."""
    row: dict[str, Any] = {}
    for r in readings:
        suffix = "_est" if r.estimate else ""
        if r.component != "memory":
            row[f"{r.component}_energy_j{suffix}"] = r.joules
            row[f"{r.component}_energy_method{suffix}"] = r.method
            if r.note:
                row[f"{r.component}_energy_note{suffix}"] = r.note
        for key, value in r.extra.items():
            row[f"{key}{suffix}" if not key.endswith("_est") else key] = value
    return row


def energy_columns(phases: Iterable[Any], kinds: tuple[str, ...] = ("train",)) -> dict[str, Any]:
    """Result columns from the readings of phases of `kinds` (training by default).

    `train_energy_j` sums measured components only and `energy_method` says which method
    measured each one and why any is unmetered; estimates go to `train_energy_j_est` and
    `co2_kg_est` and never into the measured figure.
    """
    measured: dict[tuple[str, str], float] = {}
    unmetered: dict[str, str] = {}
    notes: set[str] = set()
    est_j = est_co2 = 0.0
    est_seen = False
    peak, peak_method = math.nan, "unmetered (no memory meter)"
    resumed_s = 0.0
    for phase in phases:
        if phase.kind in kinds:
            resumed_s += getattr(phase, "resumed_s", 0.0)
        for r in getattr(phase, "readings", ()):
            if "peak_mem_bytes" in r.extra:
                value = r.extra["peak_mem_bytes"]
                peak = value if math.isnan(peak) else max(peak, value)
                peak_method = r.method
            if phase.kind not in kinds or r.component == "memory":
                continue
            if r.estimate:
                if not math.isnan(r.joules):
                    est_seen = True
                    est_j += r.joules
                    est_co2 += r.extra.get("co2_kg", 0.0)
                continue
            if math.isnan(r.joules):
                unmetered[r.component] = r.note or "no reading"
                continue
            key = (r.component, r.method)
            measured[key] = measured.get(key, 0.0) + r.joules
            if r.note:
                notes.add(f"{r.component}: {r.note}")
    parts = [f"{component}: {method}" for component, method in sorted(measured)]
    parts += [
        f"{component}: unmetered ({why})"
        for component, why in sorted(unmetered.items())
        if component not in {c for c, _ in measured}
    ]
    columns: dict[str, Any] = {
        "train_energy_j": sum(measured.values()) if measured else math.nan,
        "energy_method": "; ".join(parts) if parts else "unmetered (no meters enabled)",
        "train_energy_j_est": est_j if est_seen else math.nan,
        "co2_kg_est": est_co2 if est_seen else math.nan,
        "peak_mem_bytes": peak,
        "peak_mem_method": peak_method,
    }
    for (component, _method), joules in measured.items():
        columns[f"train_{component}_energy_j"] = columns.get(f"train_{component}_energy_j", 0) + (
            joules
        )
    if resumed_s > 0:
        notes.add(
            f"{resumed_s:.1f} s of training done before an interruption (resumed from a"
            " checkpoint) is not in the energy figures"
        )
    if notes:
        columns["energy_note"] = "; ".join(sorted(notes))
    return columns
