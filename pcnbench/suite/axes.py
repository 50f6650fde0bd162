"""Each axis's grid points: an entry's list-valued params expanded, every point validated."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from pcnbench.cells import Choice
from pcnbench.errors import ParamError
from pcnbench.recipe import Recipe
from pcnbench.schema import MAX_CELLS, Entry, pydantic_error
from pcnbench.suite.matrix import grid_factors, grid_size
from pcnbench.suite.plugin_errors import default_note, plugin_failed
from pcnbench.yamlsrc import KeyPath, Source


def resolve_axis(
    axis: str,
    entries: list[Entry],
    registry: Any,
    source: Source,
    recipe: Recipe,
    *,
    limit: int = MAX_CELLS,
) -> list[Choice]:
    """Expand each entry's list-valued params into a grid and validate every point."""
    choices: list[Choice] = []
    for i, entry in enumerate(entries):
        base: KeyPath = (axis, i)
        points = grid_size(entry)
        if points > limit:
            raise source.error(
                (*base, "params"),
                f"this entry's grid has {points:,} points ({grid_factors(entry)}), more than "
                f"max_cells {limit:,}; shorten the lists",
            )
        if entry.name not in registry:
            raise source.error((*base, "name"), registry.unknown_message(entry.name))
        plugin = registry.get(entry.name)
        keys = list(entry.params)
        grids: list[list[Any]] = []
        for key, value in entry.params.items():
            if isinstance(value, list):
                if not value:
                    raise source.error((*base, "params", key), "an empty list expands to no values")
                grids.append(value)
            else:
                grids.append([value])
        for j, rule in enumerate(entry.exclude):
            for key in rule:
                if key not in entry.params:
                    raise source.error(
                        (*base, "exclude", j, key),
                        f"exclude names '{key}', which is not a parameter of this entry "
                        f"(parameters: {', '.join(keys) or 'none'})",
                        key=True,
                    )
        kept = 0
        for picks in itertools.product(*(range(len(g)) for g in grids)):
            raw = {k: grids[n][pick] for n, (k, pick) in enumerate(zip(keys, picks, strict=True))}
            if any(all(raw[k] == v for k, v in rule.items()) for rule in entry.exclude):
                continue
            kept += 1

            translate = _translator(keys, entry.params, picks)

            try:
                params = plugin.Params.model_validate(raw)
            except ValidationError as exc:
                raise pydantic_error(exc, source, base, plugin.Params, translate) from None
            except ParamError as exc:
                raise source.error(
                    (*base, *translate((exc.key,) if exc.key else ())), exc.message
                ) from None
            if axis == "methods":
                try:
                    plugin.check(params, recipe)
                except ParamError as exc:
                    raise source.error(
                        (*base, *translate((exc.key,) if exc.key else ())),
                        exc.message + default_note(params, exc.key),
                    ) from None
                except Exception as exc:
                    raise source.error(
                        base, plugin_failed(registry, entry.name, "check", exc)
                    ) from exc
            where = {k: translate((k,)) for k in keys}
            choices.append(Choice(entry.name, params, i, raw, where))
        if kept == 0:
            raise source.error(
                (*base, "exclude"), "every combination of this entry is excluded", key=True
            )
    return choices


def _translator(
    keys: list[str], written: dict[str, Any], picks: tuple[int, ...]
) -> Callable[[KeyPath], KeyPath]:
    """Map a location inside one grid point's params to its place in the YAML entry."""

    def translate(loc: KeyPath) -> KeyPath:
        if not loc or loc[0] not in keys:
            return ("params", *loc)
        n = keys.index(str(loc[0]))
        listed = isinstance(written[keys[n]], list)
        return ("params", loc[0], *((picks[n],) if listed else ()), *loc[1:])

    return translate
