"""Operating points: results grouped by (dataset, model), method setting and result key.

A cell is one seed of one method setting; its result rows are the setting's operating points,
told apart by the columns its method names in `Method.point_keys` (an IMP cell records one row
per pruning level). An operating point collects the matching row of every seed, so its
statistics are over seeds. Settings are read from the structured `*_setting` columns, never
from the cell label.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pcnbench.api import result_tags

from .stats import Estimate, mean_ci, paired_delta

if TYPE_CHECKING:
    from pcnbench.api import Reference, ReportData

__all__ = [
    "BASELINE",
    "ModelGroup",
    "Point",
    "column",
    "dataset_references",
    "energy_of",
    "model_groups",
    "number",
    "operating_points",
    "point_keys",
    "references_for",
    "setting_items",
    "short_name",
]

# The method every other point is compared to: a naming convention (the `dense` plugin trains
# the unreduced model), not a special case of one plugin's results.
BASELINE = "dense"


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


def _json(value: Any) -> dict[str, Any]:
    """A params column's value as a dict: parsed by `load_report_data`, or JSON text."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) and value else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _key(value: Any) -> str:
    """A params value as canonical text, to group by."""
    return json.dumps(_json(value), sort_keys=True, default=str)


def setting_items(params: dict[str, Any]) -> list[str]:
    """`{"keep": "f0.25", "at_epoch": 2}` → `["keep=f0.25", "at_epoch=2"]` (text as written)."""
    return [
        f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)}"
        for k, v in params.items()
    ]


def short_name(name: str, params: dict[str, Any]) -> str:
    """`resnet(depth=20)`: a plugin's name with the parameters its grid point was given."""
    return f"{name}({','.join(setting_items(params))})" if params else name


def _setting(row: pd.Series, axis: str) -> dict[str, Any]:
    """One axis's parameters as the suite wrote them (the full parameters where not stored)."""
    written = row.get(f"{axis}_setting")
    if isinstance(written, dict) or (isinstance(written, str) and written):
        return _json(written)
    return _json(row.get(f"{axis}_params"))


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
    params: dict[str, Any] = field(default_factory=dict)  # the setting as the suite wrote it

    @property
    def base_setting(self) -> str:
        """The method's setting without the result tag: what one cell's rows have in common."""
        return ", ".join(i for i in self.items if i not in self.shared)

    @property
    def setting(self) -> str:
        """What tells this point apart from the method's others, e.g. `keep=f0.25, level=3`."""
        return ", ".join(p for p in (self.base_setting, self.tag) if p)

    @property
    def is_dense(self) -> bool:
        """Whether this is the baseline (the method named `BASELINE`)."""
        return self.method == BASELINE

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
    """Every operating point of one (dataset, model) pair; the baseline (if any) first."""

    dataset: str  # as written in the suite, e.g. "digits"
    model: str  # e.g. "mlp(width=64,depth=2)"
    points: list[Point] = field(default_factory=list)
    order: int = 0
    shared: dict[str, list[str]] = field(default_factory=dict)  # method → items all share
    dataset_name: str = ""  # the dataset plugin's name, e.g. "cifar10" (what references name)
    # published results on this group's dataset (`references:`): drawn and listed apart, never
    # operating points, so never in a frontier, a best-value mark or a Δ
    references: tuple[Reference, ...] = ()

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


def model_groups(
    results: pd.DataFrame,
    phases: pd.DataFrame | None = None,
    point_keys: Mapping[str, Sequence[str]] | None = None,
) -> list[ModelGroup]:
    """Group done results into (dataset, model) groups of operating points, in suite order.

    Settings come from the structured `*_setting` columns (the full `*_params` where absent);
    `point_keys` maps a method to the result columns that tell its cells' rows apart
    (`Method.point_keys`); `phases`, when given, names how estimated energies were made.
    """
    if results.empty:
        return []
    keys_of = point_keys or {}
    done = results[(results["status"] == "done") & column(results, "accuracy").notna()]
    sources = _estimate_sources(phases)
    if sources:
        done = done.assign(energy_estimate_method=done["cell_id"].map(sources))
    groups: dict[tuple, ModelGroup] = {}
    points: dict[tuple, list[tuple[int, pd.Series]]] = {}
    described: dict[tuple, tuple[dict[str, Any], str]] = {}
    for _cell_id, cell_rows in done.groupby("cell_id", sort=False):
        first = cell_rows.iloc[0]
        method = str(first["method"])
        gkey = (
            first["dataset"],
            _key(first.get("dataset_params")),
            first["model"],
            _key(first.get("model_params")),
        )
        if gkey not in groups:
            dataset = short_name(str(first["dataset"]), _setting(first, "dataset"))
            model = short_name(str(first["model"]), _setting(first, "model"))
            groups[gkey] = ModelGroup(
                dataset, model, order=int(first.name), dataset_name=str(first["dataset"])
            )
        tags = result_tags(cell_rows, keys_of.get(method, ()))
        for tag, (index, row) in zip(tags, cell_rows.iterrows(), strict=True):
            pkey = (*gkey, method, _key(first.get("method_params")), tag)
            described.setdefault(pkey, (_setting(first, "method"), tag))
            points.setdefault(pkey, []).append((int(index), row))
    for pkey, members in points.items():
        rows = pd.DataFrame([row for _, row in members])
        rows = rows.drop_duplicates(subset="seed", keep="last")
        params, tag = described[pkey]
        order = min(i for i, _ in members)
        point = Point(pkey[4], setting_items(params), tag, rows, order, params=params)
        groups[pkey[:4]].points.append(point)
    for group in groups.values():
        _share_items(group)
        first_seen: dict[str, int] = {}
        for p in sorted(group.points, key=lambda p: p.order):
            first_seen.setdefault(p.method, p.order)
        group.points.sort(key=lambda p: (not p.is_dense, first_seen[p.method], p.order))
    return sorted(groups.values(), key=lambda g: g.order)


def point_keys(data: ReportData) -> dict[str, tuple[str, ...]]:
    """method → its `point_keys`, for each installed method in the report's results."""
    return {name: tuple(method.point_keys) for name, method in data.methods.items()}


# The last report's groups: the tables, figures, HTML page and methods' figures all ask for
# them, and grouping is a good part of a small report's time. Callers must not modify them.
_LAST: list[tuple[Any, Any, Any, tuple[tuple[str, tuple[str, ...]], ...], list[ModelGroup]]] = []


def operating_points(data: ReportData) -> list[ModelGroup]:
    """The report's (dataset, model) groups of operating points, as the tables show them.

    Computed once per `data` (the same list is returned again: do not modify it).
    """
    keys = point_keys(data)
    frozen = tuple(sorted(keys.items()))
    for held, results, phases, held_keys, groups in _LAST:
        if (
            held is data
            and results is data.results
            and phases is data.phases
            and held_keys == frozen
        ):
            return groups
    groups = model_groups(data.results, data.phases, keys)
    listed = list(getattr(data, "references", None) or [])
    for group in groups:
        group.references = references_for(listed, group.dataset_name)
    _LAST[:] = [(data, data.results, data.phases, frozen, groups)]
    return groups


def references_for(references: Sequence[Reference], dataset: str) -> tuple[Reference, ...]:
    """The references on `dataset` (a dataset plugin's name), in the suite's order, once each."""
    return tuple(dict.fromkeys(r for r in references if r.dataset == dataset))


def dataset_references(groups: Sequence[ModelGroup]) -> dict[str, tuple[Reference, ...]]:
    """Group title's dataset (as the figures and tables name it) → its references, once each."""
    out: dict[str, tuple[Reference, ...]] = {}
    for group in groups:
        out[group.dataset] = tuple(dict.fromkeys([*out.get(group.dataset, ()), *group.references]))
    return out


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
