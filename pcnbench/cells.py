"""Matrix expansion: suite entries → validated grid points → cells with stable ids."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pcnbench.errors import ParamError
from pcnbench.recipe import Recipe
from pcnbench.suite import AXES, Choice, Entry, LoadedSuite, pydantic_error
from pcnbench.yamlsrc import KeyPath, Source

EXCLUDE_KEYS = ("dataset", "model", "method", "seed")


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


def resolve_axis(
    axis: str, entries: list[Entry], registry: Any, source: Source, recipe: Recipe
) -> list[Choice]:
    """Expand each entry's list-valued params into a grid and validate every point."""
    choices: list[Choice] = []
    for i, entry in enumerate(entries):
        base: KeyPath = (axis, i)
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
                        (*base, *translate((exc.key,) if exc.key else ())), exc.message
                    ) from None
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


def _matches_rule(rule: dict[str, Any], parts: dict[str, Any]) -> bool:
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
    if not expand(loaded):
        raise source.error(("exclude",), "the exclude rules remove every cell", key=True)


def expand(loaded: LoadedSuite) -> list[Cell]:
    """All cells of the suite, dataset-major, with suite-level excludes applied."""
    suite = loaded.suite
    cells: list[Cell] = []
    for d, m, meth, seed in itertools.product(
        loaded.datasets, loaded.models, loaded.methods, suite.seeds
    ):
        parts = {"dataset": d, "model": m, "method": meth, "seed": seed}
        if any(_matches_rule(rule, parts) for rule in suite.exclude):
            continue
        config = cell_config(d, m, meth, seed, suite.recipe, for_id=False)
        ident = cell_id(cell_config(d, m, meth, seed, suite.recipe, for_id=True))
        cells.append(Cell(ident, suite.name, d, m, meth, seed, suite.recipe, config))
    return cells


def check_compatibility(loaded: LoadedSuite, host: Any) -> None:
    """Build every (dataset, model) pair of the matrix on the meta device and run one forward."""
    import torch

    source = loaded.source
    seen: set[tuple[int, int]] = set()
    checked: set[tuple[int, int, int]] = set()
    infos: dict[int, Any] = {}
    nets: dict[tuple[int, int], Any] = {}
    for cell in expand(loaded):
        d, m, meth = cell.dataset, cell.model, cell.method
        key = (id(d), id(m))
        if key in seen:
            if (*key, id(meth)) not in checked:
                checked.add((*key, id(meth)))
                _check_method_on_model(source, host, meth, m, d, nets[key])
            continue
        seen.add(key)
        dplugin = host.datasets.get(d.name)
        if id(d) not in infos:
            try:
                infos[id(d)] = dplugin.info(d.params)
            except ParamError as exc:
                raise source.error(
                    ("datasets", d.entry, "params", *((exc.key,) if exc.key else ())), exc.message
                ) from None
        info = infos[id(d)]
        mplugin = host.models.get(m.name)
        where: KeyPath = ("models", m.entry)
        try:
            with torch.device("meta"):
                net = mplugin.build(m.params, info)
                net.eval()
                out = net(torch.zeros(2, *info.input_shape))
        except ParamError as exc:
            raise source.error(
                (*where, "params", *((exc.key,) if exc.key else ())),
                f"with dataset '{d.name}' (input {tuple(info.input_shape)}): {exc.message}",
            ) from None
        except Exception as exc:
            raise source.error(
                where,
                f"model '{m.name}' does not work with dataset '{d.name}' (input "
                f"{tuple(info.input_shape)}, {info.num_classes} classes): "
                f"{type(exc).__name__}: {exc}",
            ) from None
        if tuple(out.shape) != (2, info.num_classes):
            raise source.error(
                where,
                f"model '{m.name}' returns shape {tuple(out.shape)} for dataset '{d.name}'; "
                f"expected (batch, {info.num_classes})",
            )
        nets[key] = net
        checked.add((*key, id(meth)))
        _check_method_on_model(source, host, meth, m, d, net)


def _check_method_on_model(
    source: Source, host: Any, method: Choice, model: Choice, dataset: Choice, net: Any
) -> None:
    """Let the method reject parameters that do not fit this model (see Method.check_model)."""
    try:
        host.methods.get(method.name).check_model(method.params, net)
    except ParamError as exc:
        at = method.where.get(exc.key, ("params", exc.key)) if exc.key else ()
        raise source.error(
            ("methods", method.entry, *at),
            f"with model '{model.name}' on '{dataset.name}': {exc.message}",
        ) from None


def select(cells: list[Cell], pattern: str | None) -> list[Cell]:
    """Cells whose id or label matches `pattern` (glob; plain text matches as a substring)."""
    if not pattern:
        return cells
    glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    return [c for c in cells if fnmatch.fnmatch(c.id, glob) or fnmatch.fnmatch(c.label, glob)]


__all__ = ["AXES", "Cell", "cell_id", "expand", "resolve_axis", "select"]
