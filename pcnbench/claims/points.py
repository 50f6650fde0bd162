"""The cells a claim's selectors pick, and the operating points their results make.

An operating point is a method setting, or one of a cell's rows told apart by
`Method.point_keys`, with one result row per seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pcnbench.cells import grid_label
from pcnbench.claims.expectations import Quantity
from pcnbench.labels import is_missing, json_object, result_tags
from pcnbench.schema import ClaimSpec, Pick, ReferenceBaseline, Selector

__all__ = ["Point", "operating_points", "pairs_by_model", "point_values", "selects"]


def _object(value: Any) -> dict[str, Any]:
    return json_object(value) or {}


def _matches(pick: Pick | None, row: pd.Series, axis: str) -> bool:
    """Whether a cell (a row of the cells or results frame) matches one axis of a selector."""
    if pick is None:
        return True
    if str(row.get(axis)) != pick.name:
        return False
    setting = _object(row.get(f"{axis}_setting"))
    full = _object(row.get(f"{axis}_params"))
    return all(setting.get(k, full.get(k)) == v for k, v in pick.params.items())


def selects(selector: Selector, row: pd.Series) -> bool:
    """Whether a stored cell matches every axis the selector names."""
    return all(_matches(getattr(selector, a), row, a) for a in ("dataset", "model", "method"))


def pairs_by_model(spec: ClaimSpec) -> bool:
    """False when the selectors fix the model differently on the two sides (pair by dataset)."""
    if isinstance(spec.baseline, ReferenceBaseline):
        return False  # a published figure stands for its dataset
    a, b = spec.subject.model, spec.baseline.model
    return a is None or b is None or (a.name == b.name and a.params == b.params)


def _key(value: Any) -> str:
    return json.dumps(_object(value), sort_keys=True, default=str)


def _pair_key(row: pd.Series, by_model: bool) -> tuple[str, ...]:
    key = (str(row.get("dataset")), _key(row.get("dataset_params")))
    if by_model:
        key += (str(row.get("model")), _key(row.get("model_params")))
    return key


def _short(name: Any, setting: Any) -> str:
    return grid_label(str(name), _object(setting))


@dataclass
class Point:
    """The rows of one operating point: one per seed."""

    label: str
    pair: tuple[str, ...]
    group: str  # dataset · model
    rows: dict[int, pd.Series]
    cells: list[str]


def operating_points(
    results: pd.DataFrame, cell_ids: Iterable[str], by_model: bool, keys_of: dict[str, tuple]
) -> list[Point]:
    """The operating points the results of `cell_ids` make, in the order the results list them."""
    wanted = set(cell_ids)
    done = results[results["cell_id"].isin(wanted) & (results["status"] == "done")]
    points: dict[tuple, Point] = {}
    for _cell_id, rows in done.groupby("cell_id", sort=False):
        first = rows.iloc[0]
        method = str(first["method"])
        tags = result_tags(rows, keys_of.get(method, ()))
        setting = _short(method, first.get("method_setting"))
        group = " · ".join(
            (
                _short(first["dataset"], first.get("dataset_setting")),
                _short(first["model"], first.get("model_setting")),
            )
        )
        for tag, (_, row) in zip(tags, rows.iterrows(), strict=True):
            pkey = (
                _pair_key(first, True),
                method,
                _key(first.get("method_params")),
                tag,
            )
            if pkey not in points:
                label = f"{setting} {tag}".strip()
                points[pkey] = Point(label, _pair_key(first, by_model), group, {}, [])
            point = points[pkey]
            point.rows[int(row["seed"])] = row
            if str(row["cell_id"]) not in point.cells:
                point.cells.append(str(row["cell_id"]))
    return list(points.values())


def point_values(point: Point, q: Quantity) -> dict[int, float]:
    """The point's value of `q` per seed (seeds whose results lack it left out)."""
    out = {}
    for seed, row in point.rows.items():
        value = row.get(q.column)
        if is_missing(value):
            continue
        try:
            out[seed] = float(value)
        except (TypeError, ValueError):
            continue
    return out
