"""Operating points: results grouped by (dataset, model), method setting and result index.

A cell is one seed of one method setting; its result rows are the setting's operating points
(a lottery cell records one per pruning level). An operating point collects the matching row of
every seed, so its statistics are over seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .stats import Estimate, mean_ci, paired_delta

__all__ = [
    "ModelGroup",
    "Point",
    "column",
    "energy_of",
    "model_groups",
    "number",
]

# Columns every result row may carry that describe outcomes, never which point it is.
_OUTCOMES = {
    "suite",
    "cell_id",
    "label",
    "dataset",
    "dataset_params",
    "model",
    "model_params",
    "method",
    "method_params",
    "seed",
    "status",
    "error",
    "device",
    "result",
    "params",
    "dense_params",
    "macs",
    "dense_macs",
    "accuracy",
    "test_loss",
    "val_accuracy",
    "density",
    "compression",
    "speedup",
    "train_time_s",
    "transform_time_s",
    "eval_time_s",
    "epochs_trained",
    "step",
    "sparsity",
    "transform_epoch",
    "acc_before_transform",
    "acc_after_transform",
    "level0_accuracy",
    "rewind_step",
    "train_energy_j",
    "train_energy_j_est",
    "energy_method",
    "co2_kg_est",
    "latency_ms",
    "throughput_sps",
    "inference_method",
    "peak_mem_bytes",
}
# Keys that name a result within a cell, preferred over anything found generically.
_POINT_KEYS = ("level", "stage", "round")


def number(value: Any) -> float:
    """`value` as a float; NaN for None, text and anything else that is not a number."""
    if value is None or isinstance(value, (str, bytes)):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column of `frame`, all NaN when the column is absent."""
    if name not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").astype(float)


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _short(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    inner = ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())
    return f"{name}({inner})"


def _label_parts(label: Any) -> list[str]:
    # The cell label holds each axis as the suite author wrote it (defaults left out).
    parts = str(label).split(" · ") if isinstance(label, str) else []
    return parts if len(parts) >= 4 else []


def _split_top(text: str) -> list[str]:
    """Split `a=1,b=[2,3]` at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _items(method_label: str, method: str) -> list[str]:
    """`pcn(keep=f0.25,at_epoch=2)` → `["keep=f0.25", "at_epoch=2"]`; a bare name → `[]`."""
    if method_label.startswith(method + "(") and method_label.endswith(")"):
        return _split_top(method_label[len(method) + 1 : -1])
    return []


def _measured_part(method: str) -> str:
    # "gpu: nvml; cpu: unmetered (no RAPL)" → "gpu: nvml": the reasons go to the table notes.
    parts = [p for p in method.split("; ") if "unmetered" not in p]
    return "; ".join(parts) or "measured"


def energy_of(row: pd.Series) -> tuple[float, str]:
    """Training energy of one result (joules, NaN if none) and a short label of its source."""
    measured = number(row.get("train_energy_j"))
    method = row.get("energy_method")
    method = method if isinstance(method, str) and method else ""
    if math.isfinite(measured):
        return measured, _measured_part(method)
    estimate = number(row.get("train_energy_j_est"))
    if math.isfinite(estimate):
        source = row.get("energy_estimate_method")
        return estimate, f"estimated ({source})" if isinstance(source, str) else "estimated"
    return math.nan, "unmetered"


@dataclass
class Point:
    """One operating point: a method setting (and result key) over every seed that has it."""

    method: str
    items: list[str]  # the method's parameters as the suite wrote them, e.g. ["keep=f0.25"]
    tag: str  # the result within its cell, e.g. "level=3" ("" for one-result cells)
    rows: pd.DataFrame  # one done result row per seed
    order: int  # first appearance in the results, for a stable suite order
    shared: frozenset[str] = frozenset()  # items every setting of this method has: not shown

    @property
    def setting(self) -> str:
        """What tells this point apart from the method's others, e.g. `keep=f0.25, level=3`."""
        shown = [i for i in self.items if i not in self.shared]
        return ", ".join([*shown, self.tag] if self.tag else shown)

    @property
    def is_dense(self) -> bool:
        """Whether this is the dense baseline."""
        return self.method == "dense"

    @property
    def label(self) -> str:
        """`method setting`, e.g. `pcn keep=f0.25`."""
        return f"{self.method} {self.setting}".strip()

    @property
    def seeds(self) -> list[int]:
        """The seeds with a result at this point."""
        return sorted(int(s) for s in self.rows["seed"])

    def values(self, name: str) -> pd.Series:
        """Column `name` over seeds (NaN where absent)."""
        return column(self.rows, name)

    def by_seed(self, name: str) -> dict[int, float]:
        """seed → value of column `name` (finite values only)."""
        out = {}
        for seed, value in zip(self.rows["seed"], self.values(name), strict=True):
            if math.isfinite(value):
                out[int(seed)] = float(value)
        return out

    def mean(self, name: str) -> float:
        """Mean over seeds of column `name` (NaN when no seed has it)."""
        values = self.values(name).dropna()
        return float(values.mean()) if len(values) else math.nan

    def accuracy(self) -> Estimate | None:
        """Test accuracy (0–1) over seeds with its 95% interval."""
        return mean_ci(self.values("accuracy"))

    def energy(self) -> tuple[float, str]:
        """Mean training energy over seeds (J, NaN unless every seed has one) and its label."""
        pairs = [energy_of(row) for _, row in self.rows.iterrows()]
        joules = [j for j, _ in pairs if math.isfinite(j)]
        labels = list(dict.fromkeys(label for _, label in pairs))
        mean = float(np.mean(joules)) if len(joules) == len(pairs) and joules else math.nan
        return mean, "; ".join(labels)

    def energy_reasons(self) -> list[str]:
        """The meters' own account of what each seed measured, and why a part was not."""
        values = self.rows.get("energy_method")
        return [] if values is None else list(dict.fromkeys(str(v) for v in values.dropna()))


@dataclass
class ModelGroup:
    """Every operating point of one (dataset, model) pair; dense (if any) first."""

    dataset: str  # as written in the suite, e.g. "digits"
    model: str  # e.g. "mlp(width=64,depth=2)"
    points: list[Point] = field(default_factory=list)
    order: int = 0
    shared: dict[str, list[str]] = field(default_factory=dict)  # method → items all share

    @property
    def title(self) -> str:
        """`dataset · model`."""
        return f"{self.dataset} · {self.model}"

    @property
    def dense(self) -> Point | None:
        """The dense baseline's point, if it has results."""
        return next((p for p in self.points if p.is_dense), None)

    def delta(self, point: Point) -> Estimate | None:
        """Accuracy of `point` minus dense over the seeds both have (paired), 0–1 units."""
        dense = self.dense
        if dense is None or point is dense:
            return None
        return paired_delta(point.by_seed("accuracy"), dense.by_seed("accuracy"))


def _result_keys(cell_rows: pd.DataFrame) -> list[str]:
    """Columns that tell a cell's result rows apart (e.g. `level`), when it has several."""
    if len(cell_rows) < 2:
        return []
    known = [k for k in _POINT_KEYS if k in cell_rows.columns and cell_rows[k].nunique() > 1]
    if known:
        return known
    keys = []
    for name in cell_rows.columns:
        if name in _OUTCOMES:
            continue
        values = cell_rows[name]
        if values.isna().any() or values.nunique() < len(values):
            continue
        if all(isinstance(v, (int, np.integer)) for v in values):
            keys.append(name)  # integer counters (level, round) name points; floats are outcomes
    return keys


def _estimate_sources(phases: pd.DataFrame | None) -> dict[str, str]:
    """cell_id → how its energy estimate was made (the `*_energy_method_est` phase columns)."""
    if phases is None or phases.empty:
        return {}
    cols = [c for c in phases.columns if c.endswith("_energy_method_est")]
    out: dict[str, str] = {}
    for cell_id, rows in phases.groupby("cell_id"):
        names = [str(v) for c in cols for v in rows[c].dropna()]
        if names:
            out[str(cell_id)] = ", ".join(dict.fromkeys(names))
    return out


def model_groups(results: pd.DataFrame, phases: pd.DataFrame | None = None) -> list[ModelGroup]:
    """Group done results into (dataset, model) groups of operating points, in suite order.

    `phases`, when given, names how estimated energies were made.
    """
    if results.empty:
        return []
    done = results[(results["status"] == "done") & column(results, "accuracy").notna()]
    sources = _estimate_sources(phases)
    if sources:
        done = done.assign(energy_estimate_method=done["cell_id"].map(sources))
    groups: dict[tuple, ModelGroup] = {}
    points: dict[tuple, list[tuple[int, pd.Series]]] = {}
    described: dict[tuple, tuple[list[str], str]] = {}
    for _cell_id, cell_rows in done.groupby("cell_id", sort=False):
        first = cell_rows.iloc[0]
        parts = _label_parts(first.get("label"))
        dataset = parts[0] if parts else _short(first["dataset"], _json(first["dataset_params"]))
        model = parts[1] if parts else _short(first["model"], _json(first["model_params"]))
        method_label = parts[2] if parts else _short(first["method"], _json(first["method_params"]))
        gkey = (first["dataset"], first["dataset_params"], first["model"], first["model_params"])
        if gkey not in groups:
            groups[gkey] = ModelGroup(dataset, model, order=int(first.name))
        keys = _result_keys(cell_rows)
        for position, (index, row) in enumerate(cell_rows.iterrows()):
            tag = ", ".join(f"{k}={_plain(row[k])}" for k in keys)
            if not tag and len(cell_rows) > 1:
                tag = f"result {position}"
            pkey = (*gkey, first["method"], first["method_params"], position)
            described[pkey] = (_items(method_label, str(first["method"])), tag)
            points.setdefault(pkey, []).append((int(index), row))
    for pkey, members in points.items():
        rows = pd.DataFrame([row for _, row in members])
        rows = rows.drop_duplicates(subset="seed", keep="last")
        items, tag = described[pkey]
        order = min(i for i, _ in members)
        groups[pkey[:4]].points.append(Point(str(pkey[4]), items, tag, rows, order))
    for group in groups.values():
        _share_items(group)
        first_seen: dict[str, int] = {}
        for p in sorted(group.points, key=lambda p: p.order):
            first_seen.setdefault(p.method, p.order)
        group.points.sort(key=lambda p: (not p.is_dense, first_seen[p.method], p.order))
    return sorted(groups.values(), key=lambda g: g.order)


def _share_items(group: ModelGroup) -> None:
    """Move parameters every setting of a method has in common out of the setting column."""
    by_method: dict[str, list[Point]] = {}
    for point in group.points:
        by_method.setdefault(point.method, []).append(point)
    for method, members in by_method.items():
        if len(members) < 2:
            continue  # a lone point: its parameters are what the reader needs to see
        common = set(members[0].items).intersection(*(p.items for p in members[1:]))
        if common:
            group.shared[method] = [i for i in members[0].items if i in common]
            for point in members:
                point.shared = frozenset(common)


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
