"""Cells: the grid points of a suite's matrix, their canonical configuration and stable ids."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pcnbench.recipe import Recipe

EXCLUDE_KEYS = ("dataset", "model", "method", "seed")


@dataclass(frozen=True)
class Choice:
    """One resolved grid point of an entry: the plugin name, validated params, and provenance."""

    name: str
    params: Any  # the plugin's Params instance
    entry: int  # index of the entry in its axis list
    raw: dict[str, Any]  # the params as written for this grid point
    # each param's place in the YAML entry, e.g. {"at_epoch": ("params", "at_epoch", 1)}
    where: dict[str, tuple[Any, ...]] = field(default_factory=dict, compare=False)


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

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. `digits · mlp(width=64) · dense · seed 0`."""
        parts = [_short(self.dataset), _short(self.model), _short(self.method), f"seed {self.seed}"]
        return " · ".join(parts)


def _short(choice: Choice) -> str:
    # the params as the suite wrote them: what distinguishes this grid point to its author
    shown = choice.raw
    if not shown:
        return choice.name
    inner = ",".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in shown.items()
    )
    return f"{choice.name}({inner})"


def canonical(choice: Choice, *, for_id: bool = False) -> dict[str, Any]:
    """Name and params of a grid point; `for_id` drops values equal to their default."""
    params = choice.params.model_dump(mode="json", exclude_defaults=for_id)
    return {"name": choice.name, "params": params}


def cell_config(
    dataset: Choice, model: Choice, method: Choice, seed: int, recipe: Recipe, *, for_id: bool
) -> dict[str, Any]:
    """The canonical configuration of a cell (defaults filled unless `for_id`)."""
    return {
        "dataset": canonical(dataset, for_id=for_id),
        "model": canonical(model, for_id=for_id),
        "method": canonical(method, for_id=for_id),
        "seed": seed,
        "recipe": recipe.model_dump(mode="json", exclude_defaults=for_id),
    }


def cell_id(config_for_id: dict[str, Any]) -> str:
    """Stable id: sha256 of the sorted-key JSON of the non-default configuration.

    Values equal to their default are left out, so adding a field with a default keeps old ids;
    the price is that a default, once released, must never change meaning.
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
    cells: list[Cell] = []
    for d, m, meth, seed in itertools.product(datasets, models, methods, seeds):
        parts = {"dataset": d, "model": m, "method": meth, "seed": seed}
        if any(matches_rule(rule, parts) for rule in exclude):
            continue
        config = cell_config(d, m, meth, seed, recipe, for_id=False)
        ident = cell_id(cell_config(d, m, meth, seed, recipe, for_id=True))
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
    "canonical",
    "cell_config",
    "cell_id",
    "expand",
    "select",
]
