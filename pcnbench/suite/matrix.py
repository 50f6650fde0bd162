"""The matrix as a whole: its size (counted before expanding), exclude rules, duplicate cells."""

from __future__ import annotations

import math
from typing import Any

from pcnbench.cells import EXCLUDE_KEYS
from pcnbench.schema import AXES, Entry, Suite
from pcnbench.suite.loaded import LoadedSuite
from pcnbench.yamlsrc import KeyPath, Source


def grid_size(entry: Entry) -> int:
    """How many grid points an entry's list-valued params make, before its exclude rules."""
    return math.prod(len(v) if isinstance(v, list) else 1 for v in entry.params.values())


def grid_factors(entry: Entry) -> str:
    """The list-valued params of an entry and their lengths, e.g. `lr 10 × wd 100`."""
    lists = [f"{k} {len(v):,}" for k, v in entry.params.items() if isinstance(v, list)]
    return " × ".join(lists) or "no lists"


def check_size(suite: Suite, source: Source) -> int:
    """Count the suite's cells arithmetically (no grid expanded); refuse more than max_cells."""
    sizes = {axis: [grid_size(e) for e in getattr(suite, axis)] for axis in AXES}
    counts = {axis: sum(s) for axis, s in sizes.items()}
    total = math.prod(counts.values()) * len(suite.seeds)
    if total <= suite.max_cells:
        return total
    factors = " × ".join(f"{axis} {counts[axis]:,}" for axis in AXES)
    axis, i = max(
        ((a, j) for a in AXES for j in range(len(sizes[a]))), key=lambda x: sizes[x[0]][x[1]]
    )
    entry = getattr(suite, axis)[i]
    at: KeyPath = ("max_cells",) if "max_cells" in source.data else ()
    raise source.error(
        at,
        f"the suite expands to {total:,} cells ({factors} × seeds {len(suite.seeds):,}, "
        f"before exclude rules), more than max_cells {suite.max_cells:,}; the largest grid is "
        f"{axis}[{i}] ('{entry.name}', {sizes[axis][i]:,} points: {grid_factors(entry)}). "
        f"Shorten the lists, or set max_cells: {total} in the suite if you mean it",
        key=bool(at),
    )


def check_excludes(loaded: LoadedSuite) -> None:
    """Validate the suite-level `exclude:` rules against the suite's own entries."""
    source = loaded.source
    for j, rule in enumerate(loaded.suite.exclude):
        base: KeyPath = ("exclude", j)
        for key, want in rule.items():
            if key not in EXCLUDE_KEYS:
                raise source.error(
                    (*base, key),
                    f"unknown key '{key}' (an exclude rule matches on {', '.join(EXCLUDE_KEYS)})",
                    key=True,
                )
            if key == "seed":
                if want not in loaded.suite.seeds:
                    raise source.error((*base, key), f"seed {want} is not in seeds")
                continue
            names = sorted({c.name for c in getattr(loaded, key + "s")})
            name = want if isinstance(want, str) else (want or {}).get("name")
            if not isinstance(want, (str, dict)) or (
                isinstance(want, dict) and set(want) - {"name", "params"}
            ):
                raise source.error(
                    (*base, key), f"must be a {key} name or a mapping with name and params"
                )
            if name is not None and name not in names:
                raise source.error(
                    (*base, key), f"'{name}' is not one of the suite's {key}s ({', '.join(names)})"
                )


def check_duplicates(loaded: LoadedSuite) -> None:
    """Refuse two grid points that make the same cell (the same id): one would shadow the other.

    It happens when entries differ only in values equal to their defaults or in parameters
    that only locate data (`Locator`), which cell ids leave out.
    """
    first: dict[str, Any] = {}
    for cell in loaded.cells:
        seen = first.setdefault(cell.id, cell)
        if seen is cell:
            continue
        for axis, name in (("datasets", "dataset"), ("models", "model"), ("methods", "method")):
            a, b = getattr(seen, name), getattr(cell, name)
            if a is not b:
                where = f"{axis}[{a.entry}]" if a.entry != b.entry else "another grid point of it"
                raise loaded.source.error(
                    (axis, b.entry),
                    f"'{b.label}' makes the same cells as {where} ('{a.label}'): the two are "
                    "identical once defaults are filled in (a value equal to its default, or "
                    "where the data lives, does not change a cell); remove one",
                )
