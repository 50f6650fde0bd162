"""Cells: the grid points of a suite's matrix, their canonical configuration and stable ids."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pcnbench.recipe import Recipe

EXCLUDE_KEYS = ("dataset", "model", "method", "seed")


@dataclass(frozen=True)
class Locator:
    """Marks a parameter that locates, fetches or loads data, not what it is: not in cell ids.

    Written `root: Annotated[str, Locator()] = "data"` (the marker outermost in `Annotated`).
    The value still reaches the plugin and is stored with the cell's full configuration, but
    cell ids (and the trunk and checkpoint keys derived from them) leave it out, so moving the
    data, switching `download` or changing a loader's worker count keeps every id. Mark only
    what cannot change results: two values of a marked field give the same cell.
    """


# Per model class: its Locator fields and its other fields. A suite's matrix asks about the
# same few classes once per cell, and reading `model_fields` is not free.
_FIELDS: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}


def _fields(model: type[BaseModel]) -> tuple[frozenset[str], tuple[str, ...]]:
    found = _FIELDS.get(model)
    if found is None:
        fields = model.model_fields
        marked = frozenset(
            name
            for name, info in fields.items()
            if any(m is Locator or isinstance(m, Locator) for m in info.metadata)
        )
        found = _FIELDS[model] = (marked, tuple(n for n in fields if n not in marked))
    return found


def locator_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the fields of a pydantic model class marked with `Locator`."""
    return _fields(model)[0]


def _locators(value: BaseModel) -> dict[str, Any]:
    # pydantic's `exclude` for every Locator field of a model and of the models nested in it:
    # {field: True} or {field: {nested field: ...}}
    marked, others = _fields(type(value))
    spec: dict[str, Any] = dict.fromkeys(marked, True)
    for name in others:
        inner = getattr(value, name)
        if isinstance(inner, BaseModel):
            nested = _locators(inner)
            if nested:
                spec[name] = nested
    return spec


def _id_dump(value: BaseModel) -> dict[str, Any]:
    # the model without values equal to their default and without Locator fields
    spec = _locators(value)
    dumped = value.model_dump(mode="json", exclude_defaults=True, exclude=spec or None)
    for name, nested in spec.items():
        if nested is True or name not in dumped:
            continue
        # a nested model that differs from its default only in Locator fields is its default
        inner = getattr(value, name)
        default = type(value).model_fields[name].get_default(call_default_factory=True)
        if isinstance(default, BaseModel) and _without_locators(inner) == _without_locators(
            default
        ):
            del dumped[name]
        else:
            dumped[name] = _id_dump(inner)
    return dumped


def _without_locators(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json", exclude=_locators(value) or None)


def _dump(value: BaseModel, *, for_id: bool) -> dict[str, Any]:
    return _id_dump(value) if for_id else value.model_dump(mode="json")


@dataclass(frozen=True)
class Choice:
    """One resolved grid point of an entry: the plugin name, validated params, and provenance."""

    name: str
    params: Any  # the plugin's Params instance
    entry: int  # index of the entry in its axis list
    raw: dict[str, Any]  # the params as written for this grid point
    # each param's place in the YAML entry, e.g. {"at_epoch": ("params", "at_epoch", 1)}
    where: dict[str, tuple[Any, ...]] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def label(self) -> str:
        """The grid point as the suite wrote it, e.g. `pcn(keep=f0.25)` (worked out once)."""
        return grid_label(self.name, self.raw)


@dataclass(frozen=True)
class Cell:
    """One concrete run: dataset, model, method with parameters, seed and recipe."""

    id: str
    suite: str
    dataset: Choice
    model: Choice
    method: Choice
    seed: int
    recipe: Recipe
    config: dict[str, Any] = field(compare=False, hash=False)

    @functools.cached_property
    def label(self) -> str:
        """A short human-readable name, e.g. `digits · mlp(width=64) · dense · seed 0`."""
        parts = [self.dataset.label, self.model.label, self.method.label, f"seed {self.seed}"]
        return " · ".join(parts)


def grid_label(name: str, written: Mapping[str, Any] | None) -> str:
    """`name(key=value,...)` with the params as the suite wrote them, or `name` without any."""
    if not written:
        return name
    inner = ",".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in written.items()
    )
    return f"{name}({inner})"


def canonical(choice: Choice, *, for_id: bool = False) -> dict[str, Any]:
    """Name and params of a grid point; `for_id` drops defaults and `Locator` fields."""
    return {"name": choice.name, "params": _dump(choice.params, for_id=for_id)}


def cell_config(
    dataset: Choice, model: Choice, method: Choice, seed: int, recipe: Recipe, *, for_id: bool
) -> dict[str, Any]:
    """The canonical configuration of a cell (all of it unless `for_id`: see `canonical`)."""
    return {
        "dataset": canonical(dataset, for_id=for_id),
        "model": canonical(model, for_id=for_id),
        "method": canonical(method, for_id=for_id),
        "seed": seed,
        "recipe": _dump(recipe, for_id=for_id),
    }


def cell_id(config_for_id: dict[str, Any]) -> str:
    """Stable id: sha256 of the sorted-key JSON of the non-default configuration.

    Values equal to their default are left out, so adding a field with a default keeps old ids;
    the price is that a default, once released, must never change meaning. Fields marked
    `Locator` (where the data is, whether to download it) are left out too.
    """
    blob = json.dumps(config_for_id, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def matches_rule(rule: dict[str, Any], parts: dict[str, Any]) -> bool:
    """Whether a suite-level exclude rule matches a cell's parts."""
    for key, want in rule.items():
        have = parts[key]
        if key == "seed":
            if have != want:
                return False
        elif isinstance(want, str):
            if have.name != want:
                return False
        else:
            if have.name != want.get("name", have.name):
                return False
            for pk, pv in (want.get("params") or {}).items():
                if have.raw.get(pk, getattr(have.params, pk, None)) != pv:
                    return False
    return True


def expand(
    suite: str,
    datasets: Sequence[Choice],
    models: Sequence[Choice],
    methods: Sequence[Choice],
    seeds: Sequence[int],
    recipe: Recipe,
    exclude: Sequence[dict[str, Any]] = (),
) -> list[Cell]:
    """All cells of a matrix, dataset-major, without those an `exclude` rule matches."""
    # each grid point is dumped once, not once per cell it appears in (10^4 cells: 0.8 s → 0.2 s);
    # so cells share the nested dicts of their `config`, which nothing may modify
    full = {id(c): canonical(c) for c in (*datasets, *models, *methods)}
    short = {id(c): canonical(c, for_id=True) for c in (*datasets, *models, *methods)}
    recipe_full, recipe_short = _dump(recipe, for_id=False), _dump(recipe, for_id=True)
    cells: list[Cell] = []
    for d, m, meth, seed in itertools.product(datasets, models, methods, seeds):
        if exclude:
            parts = {"dataset": d, "model": m, "method": meth, "seed": seed}
            if any(matches_rule(rule, parts) for rule in exclude):
                continue
        config = {
            **{k: full[id(c)] for k, c in (("dataset", d), ("model", m))},
            "method": full[id(meth)],
            "seed": seed,
            "recipe": recipe_full,
        }
        ident = cell_id(
            {
                "dataset": short[id(d)],
                "model": short[id(m)],
                "method": short[id(meth)],
                "seed": seed,
                "recipe": recipe_short,
            }
        )
        cells.append(Cell(ident, suite, d, m, meth, seed, recipe, config))
    return cells


def select(cells: list[Cell], pattern: str | None) -> list[Cell]:
    """Cells whose id or label matches `pattern` (glob; plain text matches as a substring)."""
    if not pattern:
        return cells
    glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    return [c for c in cells if fnmatch.fnmatch(c.id, glob) or fnmatch.fnmatch(c.label, glob)]


__all__ = [
    "EXCLUDE_KEYS",
    "Cell",
    "Choice",
    "Locator",
    "canonical",
    "cell_config",
    "cell_id",
    "expand",
    "grid_label",
    "locator_fields",
    "select",
]
