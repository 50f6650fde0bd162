"""Loading a suite: parse and validate the YAML, resolve each entry's grid, expand the cells.

Every error points into the YAML (file:line:col and key path) and says what was expected.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pcnbench.cells import EXCLUDE_KEYS, Cell, Choice, expand, matches_rule
from pcnbench.claims import (
    QUANTITIES,
    REFERENCE_QUANTITIES,
    pairs_by_model,
    parse_expectation,
    selector_label,
)
from pcnbench.coverage import Coverage
from pcnbench.errors import ParamError, SuiteError
from pcnbench.recipe import Recipe
from pcnbench.schema import (
    AXES,
    MAX_CELLS,
    ClaimSpec,
    Entry,
    Pick,
    ReferenceBaseline,
    Selector,
    Suite,
    parse_suite,
    pydantic_error,
)
from pcnbench.yamlsrc import KeyPath, Source, load_source, load_text


@dataclass
class LoadedSuite:
    """A validated suite: the schema object, the resolved grid points, and the source."""

    suite: Suite
    source: Source
    datasets: list[Choice]
    models: list[Choice]
    methods: list[Choice]
    sha256: str
    text: str
    cells: list[Cell] = field(default_factory=list)  # the expanded matrix (expanded once)
    # (dataset, model, method) grid points and what the method will reduce of that model
    # (`Method.plan_coverage`; absent where the method does not say)
    coverage: list[tuple[Choice, Choice, Choice, Coverage]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The suite's name."""
        return self.suite.name

    @property
    def file(self) -> str:
        """The suite file's path as given."""
        return self.source.file

    def output_dir(self, override: str | Path | None = None) -> Path:
        """Where results go: override, else the suite's `output`, else reports/<name>."""
        if override is not None:
            return Path(override)
        return Path(self.suite.output) if self.suite.output else Path("reports") / self.suite.name


def grid_size(entry: Entry) -> int:
    """How many grid points an entry's list-valued params make, before its exclude rules."""
    return math.prod(len(v) if isinstance(v, list) else 1 for v in entry.params.values())


def _grid_factors(entry: Entry) -> str:
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
        f"{axis}[{i}] ('{entry.name}', {sizes[axis][i]:,} points: {_grid_factors(entry)}). "
        f"Shorten the lists, or set max_cells: {total} in the suite if you mean it",
        key=bool(at),
    )


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
                f"this entry's grid has {points:,} points ({_grid_factors(entry)}), more than "
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
                        exc.message + _default_note(params, exc.key),
                    ) from None
                except Exception as exc:
                    raise source.error(
                        base, _plugin_failed(registry, entry.name, "check", exc)
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


def _pick_error(
    loaded: LoadedSuite, at: KeyPath, axis: str, pick: Pick, raw: Any
) -> SuiteError | None:
    """An error when no grid point of the suite's `axis` matches `pick` (a name or name+params)."""
    source = loaded.source
    choices: list[Choice] = getattr(loaded, axis + "s")
    names = list(dict.fromkeys(c.name for c in choices))
    named = [c for c in choices if c.name == pick.name]
    if not named:
        where = (*at, "name") if isinstance(raw, dict) else at
        return source.error(
            where, f"'{pick.name}' is not one of the suite's {axis}s ({', '.join(names)})"
        )
    for key, want in pick.params.items():
        kept = [c for c in named if c.raw.get(key, getattr(c.params, key, None)) == want]
        if not kept:
            have = sorted(
                {repr(c.raw.get(key, getattr(c.params, key, None))) for c in named}, key=str
            )
            return source.error(
                (*at, "params", key),
                f"no {axis} '{pick.name}' of the suite has {key}={want!r} "
                f"(it has {key} {', '.join(have)})",
            )
        named = kept
    return None


def _cell_group(cell: Cell, by_model: bool) -> str:
    """What a claim pairs cells by: the dataset (and model) grid point."""
    parts = [cell.dataset.label] + ([cell.model.label] if by_model else [])
    return " · ".join(parts)


def check_claims(loaded: LoadedSuite) -> None:
    """Validate the suite's `claims:` against its own cells (selectors, quantities, bounds)."""
    source = loaded.source
    for i, spec in enumerate(loaded.suite.claims):
        base: KeyPath = ("claims", i)
        raw = source.data["claims"][i]
        for key, text in spec.expect.items():
            try:
                parse_expectation(key, text)
            except KeyError as exc:
                raise source.error((*base, "expect", key), str(exc.args[0]), key=True) from None
            except ValueError as exc:
                raise source.error((*base, "expect", key), str(exc)) from None
        picked: dict[str, list[Cell]] = {}
        if isinstance(spec.baseline, ReferenceBaseline):
            _check_reference_claim(loaded, base, spec, raw)
            continue
        for side in ("subject", "baseline"):
            selector: Selector = getattr(spec, side)
            at: KeyPath = (*base, side)
            rule = _check_subject(loaded, at, selector, raw.get(side) or {})
            cells = [
                c
                for c in loaded.cells
                if matches_rule(
                    rule, {"dataset": c.dataset, "model": c.model, "method": c.method, "seed": 0}
                )
            ]
            if not cells:
                raise source.error(
                    at,
                    f"the {side} ({selector_label(selector)}) matches no cell of the suite: "
                    "the exclude rules remove every cell it names",
                )
            picked[side] = cells
        both = {c.id for c in picked["subject"]} & {c.id for c in picked["baseline"]}
        if both:
            raise source.error(
                (*base, "baseline"),
                f"{len(both)} cells are both subject and baseline; make the selectors differ",
            )
        by_model = pairs_by_model(spec)
        subject = {_cell_group(c, by_model) for c in picked["subject"]}
        baseline: dict[str, set[str]] = {}
        for cell in picked["baseline"]:
            baseline.setdefault(_cell_group(cell, by_model), set()).add(
                f"{cell.model.label} · {cell.method.label}"
            )
        if not subject & set(baseline):
            how = "dataset and model" if by_model else "dataset"
            raise source.error(
                (*base, "baseline"),
                f"no baseline cell shares a {how} with a subject cell (subject: "
                f"{', '.join(sorted(subject))}; baseline: {', '.join(sorted(baseline))})",
            )
        for group, settings in baseline.items():
            if group in subject and len(settings) > 1:
                raise source.error(
                    (*base, "baseline"),
                    f"the baseline matches {len(settings)} settings for {group} "
                    f"({'; '.join(sorted(settings))}): name one (with params) to compare with",
                )


def _check_subject(loaded: LoadedSuite, at: KeyPath, selector: Selector, written: Any) -> dict:
    """A claim side's selector names something, and each pick exists in the suite; its rule."""
    source = loaded.source
    if not any(getattr(selector, a) is not None for a in ("dataset", "model", "method")):
        raise source.error(at, "a selector names a dataset, model or method (or several)")
    for axis in ("dataset", "model", "method"):
        pick = getattr(selector, axis)
        if pick is not None:
            error = _pick_error(loaded, (*at, axis), axis, pick, written.get(axis))
            if error is not None:
                raise error
    return {
        a: getattr(selector, a).model_dump()
        for a in ("dataset", "model", "method")
        if getattr(selector, a) is not None
    }


def _check_reference_claim(
    loaded: LoadedSuite, base: KeyPath, spec: ClaimSpec, raw: dict[str, Any]
) -> None:
    """A claim against a published reference: the reference exists and states each quantity,
    and the subject names cells on its dataset."""
    source = loaded.source
    assert isinstance(spec.baseline, ReferenceBaseline)
    wanted = spec.baseline.reference
    labels = [r.label for r in loaded.suite.references]
    if wanted not in labels:
        close = difflib.get_close_matches(wanted, labels, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listed = ", ".join(f"'{label}'" for label in labels) or "none"
        raise source.error(
            (*base, "baseline", "reference"),
            f"the suite lists no reference '{wanted}'{hint} (references: {listed})",
        )
    reference = loaded.suite.references[labels.index(wanted)]
    for key in spec.expect:
        stated = REFERENCE_QUANTITIES.get(QUANTITIES[key].column)
        if stated is None or getattr(reference, stated) is None:
            what = (
                "states accuracy, params and MACs only"
                if stated is None
                else f"states no {stated} (add it to the reference)"
            )
            raise source.error(
                (*base, "expect", key),
                f"the reference '{wanted}' {what}: it cannot be compared on {key}",
                key=True,
            )
    rule = _check_subject(loaded, (*base, "subject"), spec.subject, raw.get("subject") or {})
    on_dataset = [
        c
        for c in loaded.cells
        if c.dataset.name == reference.dataset
        and matches_rule(
            rule, {"dataset": c.dataset, "model": c.model, "method": c.method, "seed": 0}
        )
    ]
    if not on_dataset:
        raise source.error(
            (*base, "subject"),
            f"the subject ({selector_label(spec.subject)}) matches no cell on the reference's "
            f"dataset '{reference.dataset}'",
        )


def check_references(loaded: LoadedSuite) -> None:
    """Each reference names one of the suite's datasets (its figures are drawn beside them)."""
    names = list(dict.fromkeys(c.name for c in loaded.datasets))
    for i, ref in enumerate(loaded.suite.references):
        if ref.dataset not in names:
            raise loaded.source.error(
                ("references", i, "dataset"),
                f"'{ref.dataset}' is not one of the suite's datasets ({', '.join(names)})",
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


def check_compatibility(loaded: LoadedSuite, host: Any) -> None:
    """Build every (dataset, model) pair of the matrix (weights uninitialised), one forward each."""
    source = loaded.source
    checked: set[tuple[int, int, int]] = set()
    infos: dict[int, Any] = {}
    nets: dict[tuple[int, int], Any] = {}
    for cell in loaded.cells:
        d, m, meth = cell.dataset, cell.model, cell.method
        key = (id(d), id(m))
        if key in nets:
            if (*key, id(meth)) not in checked:
                checked.add((*key, id(meth)))
                _check_method_on_model(loaded, host, meth, m, d, nets[key], infos[id(d)])
            continue
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
            net, out = _probe(mplugin, m.params, info)
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
                f"{type(exc).__name__}: {_first_line(exc)}",
            ) from None
        if tuple(out.shape) != (2, info.num_classes):
            raise source.error(
                where,
                f"model '{m.name}' returns shape {tuple(out.shape)} for dataset '{d.name}'; "
                f"expected (batch, {info.num_classes})",
            )
        nets.clear()  # cells come model by model: keep one built model, not all of them
        nets[key] = net
        checked.add((*key, id(meth)))
        _check_method_on_model(loaded, host, meth, m, d, net, info)


# A model with at most this many parameters is probed on the CPU: torch's meta kernels import
# its compiler stack (over a second) on the first forward; uninitialised CPU memory costs none
_CPU_PROBE_MAX_PARAMS = 50_000_000


def _probe(plugin: Any, params: Any, info: Any) -> tuple[Any, Any]:
    """Build the model without initialising weights, run one forward of 2 zero inputs."""
    import torch

    with torch.device("meta"):
        net = plugin.build(params, info)
    net.eval()
    small = sum(p.numel() for p in net.parameters()) <= _CPU_PROBE_MAX_PARAMS
    device = "cpu" if small else "meta"
    if small:  # only shapes matter: the values (uninitialised memory) are never read
        # (not `to_empty`: on meta tensors it goes through torch's symbolic-shape machinery)
        for module in net.modules():
            for name, value in module._parameters.items():
                if value is not None:
                    fresh = torch.empty(value.shape, dtype=value.dtype)
                    module._parameters[name] = torch.nn.Parameter(fresh, value.requires_grad)
            for name, value in module._buffers.items():
                if value is not None:
                    module._buffers[name] = torch.empty(value.shape, dtype=value.dtype)
    with torch.no_grad():
        out = net(torch.zeros(2, *info.input_shape, device=device))
    return net, out


def _default_note(params: Any, key: str | None) -> str:
    """`(at_epoch is not set: 5 is its default)` when a rejected parameter was left unwritten."""
    fields = type(params).model_fields if isinstance(params, BaseModel) else {}
    if key is None or key not in fields or key in params.model_fields_set:
        return ""
    return f" ({key} is not set in the suite: {getattr(params, key)!r} is its default)"


def _check_method_on_model(
    loaded: LoadedSuite,
    host: Any,
    method: Choice,
    model: Choice,
    dataset: Choice,
    net: Any,
    info: Any,
) -> None:
    """Let the method reject parameters that do not fit this model (see Method.check_model),
    and ask it what it will reduce of the model (Method.plan_coverage)."""
    source = loaded.source
    plugin = host.methods.get(method.name)
    try:
        plugin.check_model(method.params, net)
    except ParamError as exc:
        at = method.where.get(exc.key, ("params", exc.key)) if exc.key else ()
        raise source.error(
            ("methods", method.entry, *at),
            f"with model '{model.name}' on '{dataset.name}': {exc.message}"
            + _default_note(method.params, exc.key),
        ) from None
    except Exception as exc:
        raise source.error(
            ("methods", method.entry),
            f"with model '{model.name}' on '{dataset.name}': "
            + _plugin_failed(host.methods, method.name, "check_model", exc),
        ) from exc
    try:
        account = plugin.plan_coverage(method.params, net, tuple(info.input_shape))
    except Exception as exc:
        raise source.error(
            ("methods", method.entry),
            f"with model '{model.name}' on '{dataset.name}': "
            + _plugin_failed(host.methods, method.name, "plan_coverage", exc),
        ) from exc
    if account is not None:
        loaded.coverage.append((dataset, model, method, account))


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most `limit` characters long."""
    # torch appends whole C++ backtraces to some messages
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plugin_failed(registry: Any, name: str, call: str, exc: Exception) -> str:
    """Say that a plugin's validation call raised something other than ParamError."""
    plugin = registry.plugin_of(name)
    return (
        f"{registry.kind} '{name}' (plugin '{plugin}') raised {type(exc).__name__} in {call}:"
        f" {_first_line(exc)} (plugins reject values with pcnbench.api.ParamError(key, message))"
    )


def load_suite(
    path: str | Path,
    host: Any,
    *,
    text: str | None = None,
    parsed: Callable[[Suite], None] | None = None,
) -> LoadedSuite:
    """Load, validate and resolve a suite file against the loaded plugins (a PluginHost).

    `parsed`, when given, is called with the suite's settings as soon as the file is read and
    its shape checked, before the plugins validate its grid (which builds each model).
    """
    if text is None:
        source = load_source(path)
        raw_text = source.text
    else:
        source = load_text(text, str(path))
        raw_text = text
    suite = parse_suite(source)
    check_size(suite, source)
    if parsed is not None:
        parsed(suite)
    resolved = {
        axis: resolve_axis(
            axis,
            getattr(suite, axis),
            getattr(host, axis),
            source,
            suite.recipe,
            limit=suite.max_cells,
        )
        for axis in AXES
    }
    loaded = LoadedSuite(
        suite=suite,
        source=source,
        datasets=resolved["datasets"],
        models=resolved["models"],
        methods=resolved["methods"],
        sha256=hashlib.sha256(raw_text.encode("utf-8")).hexdigest(),
        text=raw_text,
    )
    check_excludes(loaded)
    loaded.cells = expand(
        suite.name,
        loaded.datasets,
        loaded.models,
        loaded.methods,
        suite.seeds,
        suite.recipe,
        suite.exclude,
    )
    if not loaded.cells:
        raise source.error(("exclude",), "the exclude rules remove every cell", key=True)
    check_duplicates(loaded)
    check_claims(loaded)
    check_references(loaded)
    check_compatibility(loaded, host)
    executors = getattr(host, "executors", None)
    if executors is not None and suite.executor.name not in executors:
        raise source.error(
            ("executor", "name")
            if isinstance(source.data.get("executor"), dict)
            else ("executor",),
            executors.unknown_message(suite.executor.name),
        )
    if executors is not None:
        check_executor_options(suite, source, executors.get(suite.executor.name))
    return loaded


def check_executor_options(suite: Suite, source: Source, executor: Any) -> None:
    """Validate `executor.options` against the executor's `Options` model, where it has one."""
    model = getattr(executor, "Options", None)
    if model is None:
        return
    try:
        model.model_validate(suite.executor.options)
    except ValidationError as exc:
        raise pydantic_error(exc, source, ("executor", "options"), model) from None


__all__ = ["LoadedSuite", "SuiteError", "check_size", "grid_size", "load_suite", "resolve_axis"]
