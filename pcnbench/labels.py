"""What the terminal shows of cells: the shortest labels that tell the shown cells apart, error
reasons grouped, and tables fitted to the terminal's width.

`pcnbench.cells.Cell.label` names a cell in full (dataset, model, method with every parameter
the suite wrote, seed): stored with its results and matched by `--only`. On a screen most of
it is the same for every row. `short_labels` keeps only what varies among the cells shown: the
method's name and, of every axis, the parameters that differ.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rich.cells import cell_len

__all__ = [
    "CellParts",
    "Column",
    "Layout",
    "bare_reason",
    "cell_parts",
    "error_groups",
    "error_reason",
    "fit_columns",
    "is_missing",
    "json_object",
    "plain_value",
    "result_tags",
    "row_parts",
    "short_labels",
]

_AXES = ("dataset", "model", "method")


def is_missing(value: Any) -> bool:
    """Whether a results cell holds nothing: None, NaN, or pandas' NA (of an Int64 column)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    from pandas import NA  # imported by whoever holds a results frame

    return value is NA


def plain_value(value: Any) -> str:
    """A result value as text, whole floats as integers: `3`, not `3.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def result_tags(rows: Any, keys: Sequence[str]) -> list[str]:
    """What tells each of one cell's result rows (a DataFrame) apart, from its method's keys.

    `level=3` for a method whose `point_keys` are ("level",); `result 0`, `result 1`, … when
    the keys are unknown (method not installed) or do not tell the rows apart; "" for a lone
    row without keys.
    """
    present = [k for k in keys if k in rows.columns and rows[k].notna().any()]
    tags = [
        ", ".join(f"{k}={plain_value(row[k])}" for k in present if not is_missing(row[k]))
        for _, row in rows.iterrows()
    ]
    if len(rows) > 1 and len(set(tags)) < len(tags):
        return [f"result {i}" for i in range(len(rows))]
    return tags


@dataclass(frozen=True)
class CellParts:
    """What a cell's label is made of: each axis's plugin and its params as the suite wrote them."""

    key: str  # the cell id
    dataset: str = ""
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    model: str = ""
    model_params: Mapping[str, Any] = field(default_factory=dict)
    method: str = ""
    method_params: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    suite: str = ""


def cell_parts(cell: Any) -> CellParts:
    """The parts of a `pcnbench.cells.Cell` (its grid points' params as the suite wrote them)."""
    return CellParts(
        key=cell.id,
        dataset=cell.dataset.name,
        dataset_params=cell.dataset.raw,
        model=cell.model.name,
        model_params=cell.model.raw,
        method=cell.method.name,
        method_params=cell.method.raw,
        seed=cell.seed,
        suite=getattr(cell, "suite", ""),
    )


def json_object(value: Any) -> dict[str, Any] | None:
    """A JSON object column's value (text or already a mapping) as a dict; None when absent,
    empty or not an object."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def row_parts(row: Mapping[str, Any]) -> CellParts:
    """The parts of a `Store.results_frame` row: its `*_setting` columns (older databases: the
    full `*_params`, whose constant defaults drop out of the labels anyway)."""
    params = {}
    for axis in _AXES:
        found = json_object(row.get(f"{axis}_setting"))
        if found is None:  # an older database: the full params
            found = json_object(row.get(f"{axis}_params")) or {}
        params[axis] = found
    seed = row.get("seed")
    try:
        seed = int(seed) if seed is not None else None
    except (TypeError, ValueError):  # pandas' NA, or a value an older database mangled
        seed = None
    return CellParts(
        key=str(row.get("cell_id")),
        dataset=str(row.get("dataset") or ""),
        dataset_params=params["dataset"],
        model=str(row.get("model") or ""),
        model_params=params["model"],
        method=str(row.get("method") or ""),
        method_params=params["method"],
        seed=seed,
        suite=str(row.get("suite") or ""),
    )


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


_ABSENT = "\0"  # a param a cell's suite entry did not write


def _axis_texts(parts: Sequence[CellParts], axis: str, always_name: bool) -> list[str]:
    """Per cell, what tells its `axis` apart: the plugin name where names differ (or always,
    for the method), then the params that differ among the cells of the same plugin."""
    names = [getattr(p, axis) for p in parts]
    settings = [getattr(p, f"{axis}_params") for p in parts]
    canon = {
        (n, json.dumps(s, sort_keys=True, default=str))
        for n, s in zip(names, settings, strict=True)
    }
    if len(canon) == 1 and not always_name:
        return [""] * len(parts)
    show_name = always_name or len(set(names)) > 1
    varying: dict[str, list[str]] = {}  # plugin name → its params that differ, in written order
    for name in dict.fromkeys(names):
        group = [s for n, s in zip(names, settings, strict=True) if n == name]
        keys = list(dict.fromkeys(k for s in group for k in s))
        varying[name] = [
            k for k in keys if len({_value(s[k]) if k in s else _ABSENT for s in group}) > 1
        ]
    texts = []
    for name, setting in zip(names, settings, strict=True):
        shown = [f"{k}={_value(setting[k])}" for k in varying[name] if k in setting]
        texts.append(" ".join(([name] if show_name else []) + shown))
    return texts


def short_labels(parts: Sequence[CellParts], *, seed: bool = True) -> dict[str, str]:
    """Cell key → the shortest label that tells it apart from the other cells given.

    Drops the dataset and model, and every parameter, that is the same for all of them; keeps
    the method's name. With `seed`, ends in `seed N` where seeds differ (without it, cells that
    differ only in their seed share a label: the caller shows the seed on its own). Labels that
    would still collide (cells of different suites, or differing only in their recipe) gain the
    suite's name, then the start of the cell id.
    """
    unique = list({p.key: p for p in parts}.values())
    if not unique:
        return {}
    columns = [_axis_texts(unique, axis, always_name=axis == "method") for axis in _AXES]
    seeds_vary = len({p.seed for p in unique}) > 1
    labels: dict[str, str] = {}
    for i, p in enumerate(unique):
        label = " · ".join(t for t in (c[i] for c in columns) if t)
        if seed and seeds_vary and p.seed is not None:
            label = f"{label} seed {p.seed}"
        labels[p.key] = label
    by_key = {p.key: p for p in unique}

    def tell(p: CellParts) -> tuple[str, int | None]:
        return (labels[p.key], None if seed else p.seed)

    for widen in (lambda p: f"{p.suite}: ", lambda p: f"#{p.key[:8]} "):
        counts = Counter(tell(p) for p in unique)
        clashing = [k for k, p in by_key.items() if counts[tell(p)] > 1]
        if not clashing:
            break
        for key in clashing:
            labels[key] = widen(by_key[key]) + labels[key]
    return labels


def error_reason(error: Any, status: str = "failed") -> str:
    """One line for a stored error: a traceback's last line, else the message's first line
    (a cell without one, e.g. one still running or whose run died: its status says so)."""
    text = error if isinstance(error, str) else ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return f"{status}, no error recorded"
    if "Traceback (most recent call last)" in text:
        return lines[-1]
    return lines[0]


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning): +")


def bare_reason(reason: str) -> str:
    """A reason without its exception's name: `rank 0 leaves…` for `RuntimeError: rank 0…`."""
    return _EXCEPTION.sub("", reason, count=1) or reason


def error_groups(
    errors: Iterable[Any], statuses: Iterable[str] | None = None
) -> list[tuple[str, int]]:
    """The distinct reasons of `errors` (see `error_reason`) with a count each, most first."""
    pairs = (
        zip(errors, statuses, strict=True)
        if statuses is not None
        else ((e, "failed") for e in errors)
    )
    return Counter(error_reason(e, s) for e, s in pairs).most_common()


@dataclass
class Column:
    """A table column and how it gives way when the terminal is narrow.

    Ways to give, tried in this order until the table fits: every column's `short_header`;
    `short_values` (e.g. a cell id's first characters); dropping the columns with a `drop`
    rank, lowest first; cutting a column with `min_width` down to it (`…` marks the cut).
    A `key` column (what tells rows apart) is never cut: when nothing else gives, it wraps
    (and in a very narrow terminal the rightmost other columns go, all but one).
    """

    header: str
    values: list[str]
    justify: str = "left"
    short_header: str | None = None
    short_values: list[str] | None = None
    min_width: int | None = None
    max_width: int | None = None  # never wider than this, even on a wide terminal (cut with …)
    drop: int | None = None
    key: bool = False


@dataclass
class Layout:
    """A column as fitted: the header and values to show, its width, and how it overflows."""

    header: str
    values: list[str]
    width: int
    justify: str
    overflow: str  # "ellipsis" or "fold"


def _natural(column: Column) -> int:
    widest = max([cell_len(column.header), *(cell_len(v) for v in column.values)])
    return min(widest, column.max_width) if column.max_width else widest


def fit_columns(columns: Sequence[Column], width: int, gap: int = 2) -> list[Layout]:
    """The columns as shown in `width` terminal columns, `gap` between each two (see `Column`)."""
    cols = list(columns)
    natural = [_natural(c) for c in cols]
    widths = list(natural)
    shown = [True] * len(cols)

    def total() -> int:
        return sum(w for w, s in zip(widths, shown, strict=True) if s) + gap * (sum(shown) - 1)

    if total() > width:  # shorter headers lose nothing the title does not say
        cols = [replace(c, header=c.short_header) if c.short_header else c for c in cols]
        natural = [_natural(c) for c in cols]
        widths = list(natural)
    for i, c in enumerate(cols):
        if total() > width and c.short_values is not None:
            cols[i] = replace(c, values=c.short_values, short_values=None)
            natural[i] = widths[i] = _natural(cols[i])
    for i in sorted(
        (i for i, c in enumerate(cols) if c.drop is not None and not c.key),
        key=lambda i: cols[i].drop or 0,
    ):
        if total() <= width:
            break
        shown[i] = False
    for i, c in enumerate(cols):
        if shown[i] and total() > width and c.min_width is not None and not c.key:
            widths[i] = max(min(c.min_width, widths[i]), widths[i] - (total() - width))
    overflow = ["ellipsis"] * len(cols)
    if total() > width:  # the keys wrap, widest first, down to a third of the width each
        for i in sorted((i for i, c in enumerate(cols) if c.key), key=lambda i: -widths[i]):
            if total() <= width:
                break
            widths[i] = max(min(widths[i], max(8, width // 3)), widths[i] - (total() - width))
            overflow[i] = "fold"
    others = [i for i, c in enumerate(cols) if shown[i] and not c.key]
    while total() > width and len(others) > 1:  # a very narrow terminal: the rightmost go
        shown[others.pop()] = False
    for i in range(len(cols)):  # room those freed goes back to the keys that wrapped
        if shown[i] and overflow[i] == "fold" and total() < width:
            widths[i] = min(natural[i], widths[i] + width - total())
    return [
        Layout(c.header, c.values, w, c.justify, o)
        for c, w, o, s in zip(cols, widths, overflow, shown, strict=True)
        if s
    ]
