"""The suite file's typed schema; pydantic errors turned into errors that point into the YAML."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from pcnbench.errors import ParamError, SuiteError
from pcnbench.recipe import Recipe
from pcnbench.yamlsrc import KeyPath, Source

AXES = ("datasets", "models", "methods")
MAX_CELLS = 100_000  # default bound on a suite's cells, checked before any grid is expanded
MAX_SEEDS = 10_000  # the most seeds `seeds: N` may ask for
MAX_NAME = 100  # a suite's name becomes a folder name (reports/<name>)
MAX_PATH_PART = 255  # bytes in one file or folder name on common file systems
MAX_RULES = 1_000  # exclude rules of one list (each is tried against every cell or grid point)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Entry(_Strict):
    """One dataset, model or method: a registered name and its parameters (lists expand)."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_RULES)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Metering(_Strict):
    """Which meters run (all registered by default) and their options."""

    enabled: bool = True
    meters: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=lambda: {"country_iso_code": "USA"})


class ExecutorSpec(_Strict):
    """Where cells run: an executor plugin by name (`executor: ray` for short), its options."""

    name: str = Field(default="local", min_length=1)
    # local: worker processes; "auto": one per core, at most one per trunk group (None: it
    # decides)
    jobs: int | Literal["auto"] | None = None
    address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001", ...)
    options: dict[str, Any] = Field(default_factory=dict)  # the executor's own settings

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("jobs", mode="before")
    @classmethod
    def _jobs(cls, value: Any) -> Any:
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f'must be a whole number of worker processes ≥ 1, or "auto" (got {value!r})'
            )
        return value


class Resources(_Strict):
    """What one cell needs from a worker (executors that schedule, such as Ray, use it)."""

    cpus: float = Field(default=1.0, gt=0)
    gpus: float | None = Field(default=None, ge=0)  # None: 1 when cells run on CUDA, else 0


class Checkpoints(_Strict):
    """Cell checkpoints at epoch boundaries, so a killed run resumes where it was."""

    enabled: bool = True
    # at most one write per this many seconds of a cell's run (0: at every epoch boundary)
    every_s: float = Field(default=60.0, ge=0)


class Pick(_Strict):
    """A dataset, model or method a claim or reference names: a name, or a name and params."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Selector(_Strict):
    """One side of a claim: the cells whose dataset, model and method match (unset: any)."""

    dataset: Pick | None = None
    model: Pick | None = None
    method: Pick | None = None


class ReferenceBaseline(_Strict):
    """A claim's baseline that is a published figure: the label of one of the suite's
    `references:` (`baseline: {reference: "CNN (Greydanus & Kobak 2024)"}`)."""

    reference: str = Field(min_length=1, max_length=300)


def _baseline_kind(value: Any) -> str:
    # `reference:` makes it a published figure; anything else is a selector of cells
    if isinstance(value, (dict, ReferenceBaseline)) and "reference" in (
        value if isinstance(value, dict) else value.model_fields
    ):
        return "tag:reference"
    return "tag:cells"


class ClaimSpec(_Strict):
    """A claim (`claims:`): how the subject's results compare with the baseline's.

    `expect` maps a result quantity to `OP VALUE[UNIT]` (see `pcnbench.claims`); `over: any`
    supports the claim when some operating point of the subject does, `all` when every one does.
    The baseline selects cells, or names a published reference of the suite.
    """

    name: str = Field(min_length=1, max_length=300)
    subject: Selector
    baseline: Annotated[
        Annotated[Selector, Tag("tag:cells")] | Annotated[ReferenceBaseline, Tag("tag:reference")],
        Discriminator(_baseline_kind),
    ]
    expect: dict[str, Any] = Field(min_length=1)
    over: Literal["any", "all"] = "any"


class ReferenceSpec(_Strict):
    """A published result listed beside the suite's own (`references:`); never judged."""

    label: str = Field(min_length=1, max_length=300)
    source: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    model: Pick | None = None
    accuracy: float = Field(ge=0.0, le=1.0)
    params: int | None = Field(default=None, ge=1)
    macs: int | None = Field(default=None, ge=1)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must say where the figures come from (a paper, a URL)")
        return value

    @model_validator(mode="after")
    def _size(self) -> ReferenceSpec:
        if self.params is None and self.macs is None:
            raise ValueError("a reference needs params or macs (or both) to be placed on a plot")
        return self


class Suite(_Strict):
    """A whole suite: the matrix (datasets × models × methods × seeds) and one recipe."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME)
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    datasets: list[Entry] = Field(min_length=1)
    models: list[Entry] = Field(min_length=1)
    methods: list[Entry] = Field(min_length=1)
    exclude: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_RULES)
    recipe: Recipe
    device: str = "auto"
    deterministic: bool = False
    metering: Metering = Field(default_factory=Metering)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    resources: Resources = Field(default_factory=Resources)
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    output: str | None = None
    max_cells: int = Field(default=MAX_CELLS, ge=1)  # more cells than this is refused
    claims: list[ClaimSpec] = Field(default_factory=list, max_length=MAX_RULES)
    references: list[ReferenceSpec] = Field(default_factory=list, max_length=MAX_RULES)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, value: Any) -> Any:
        # `seeds: 3` is shorthand for [0, 1, 2]
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"a seed count must be ≥ 1 (got {value})")
            if value > MAX_SEEDS:
                raise ValueError(f"a seed count must be ≤ {MAX_SEEDS:,} (got {value:,})")
            return list(range(value))
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct (got {value})")
        return value

    @field_validator("output")
    @classmethod
    def _output(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("must name a folder (got an empty path)")
        if "\0" in value:
            raise ValueError("must not contain a NUL character")
        for part in re.split(r"[/\\]", value):
            size = len(part.encode("utf-8", "surrogatepass"))
            if size > MAX_PATH_PART:
                raise ValueError(
                    f"each folder name in the path must be at most {MAX_PATH_PART} bytes "
                    f"(got one of {size} bytes: '{part[:20]}…')"
                )
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N (got {value!r})")
        return value


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{key}'{hint} (allowed: {', '.join(allowed)})"


def _model_fields_at(model: type[BaseModel], path: KeyPath) -> list[str]:
    """Field names of the (nested) pydantic model at `path`, for did-you-mean hints."""
    others: list[type[BaseModel]] = []
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        sub = _models_in(field.annotation)
        if not sub:
            return []
        model, others = sub[0], sub[1:]
    # a union of models (a claim's baseline: cells or a reference): any of their keys
    return list(dict.fromkeys([*model.model_fields, *(k for m in others for k in m.model_fields)]))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names, through unions, Optional and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        out.extend(m for m in _models_in(arg) if m not in out)
    if hasattr(annotation, "__origin__") and not out:  # Annotated[X, ...]
        out.extend(_models_in(annotation.__origin__))
    return out


_VALUE_PATH = re.compile(r"^([A-Za-z_][\w.]*(?:\[\d+\])?): (.*)$", re.S)


def pydantic_error(
    exc: ValidationError,
    source: Source,
    base: KeyPath,
    model: type[BaseModel],
    translate: Callable[[KeyPath], KeyPath] | None = None,
) -> SuiteError:
    """Turn the first pydantic error into a SuiteError pointing at the offending YAML node.

    `translate` maps the error's location inside the validated data to a path in the YAML.
    """
    errors = exc.errors(include_url=False)
    # an unknown key usually explains a "missing" one next to it (a typo), so report it first
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    # a validator's or a tagged union's own entries are not keys of the YAML
    loc = tuple(
        p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tag:")))
    )
    path = (*base, *(translate(loc) if translate else loc))
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _model_fields_at(model, loc[:-1])
        return source.error(path, _did_you_mean(str(loc[-1]), allowed), key=True)
    if kind == "missing":
        return source.error(path[:-1], f"missing required key '{loc[-1]}'")
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, ParamError):
        sub = (inner.key,) if inner.key else ()
        return source.error((*path, *sub), inner.message)
    message = str(err["msg"])
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    message = re.sub(r"^Input should be", "must be", message)
    message = re.sub(r"^Input is", "is", message)
    message = re.sub(r"^String should", "must", message)
    message = re.sub(r"^List should", "must", message)
    message = message.replace(" after validation, not ", ", not ")
    match = _VALUE_PATH.match(message)
    if match and kind == "value_error":
        extra = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", match[1]) if p)
        path, message = (*path, *extra), match[2]
    if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], dict):
        got = repr(err["input"])
        message += f" (got {got if len(got) <= 80 else got[:60] + '…'})"
    return source.error(path, message)


def parse_suite(source: Source) -> Suite:
    """Validate the core schema of a loaded YAML source."""
    if not isinstance(source.data, dict):
        raise source.error((), "a suite must be a mapping with keys name, datasets, models, ...")
    try:
        return Suite.model_validate(source.data)
    except ValidationError as exc:
        raise pydantic_error(exc, source, (), Suite) from None


__all__ = [
    "AXES",
    "MAX_CELLS",
    "Checkpoints",
    "ClaimSpec",
    "Entry",
    "ExecutorSpec",
    "Metering",
    "Pick",
    "ReferenceBaseline",
    "ReferenceSpec",
    "Resources",
    "Selector",
    "Suite",
    "parse_suite",
    "pydantic_error",
]
