"""The plugin contracts: base classes and data types each kind of plugin builds on.

Plugins reach them through `pcnbench.api`, which re-exports them with the rest of the
public surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from pcnbench.recipe import Recipe

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import pandas as pd
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from pcnbench.coverage import Coverage
    from pcnbench.jobs import Job, Outcome
    from pcnbench.protocols import Session

__all__ = [
    "ClaimCheck",
    "ClaimPoint",
    "ClaimResult",
    "DataInfo",
    "DatasetPlugin",
    "EpochPlan",
    "Executor",
    "ExecutorEvents",
    "FolderSplits",
    "Meter",
    "MeterProbe",
    "Method",
    "ModelPlugin",
    "Params",
    "Reading",
    "Reference",
    "ReportData",
    "ReportFigure",
    "Reporter",
    "TensorSplits",
]


class Params(BaseModel):
    """Base class of a plugin's parameters: unknown keys are errors, values are immutable.

    A field that only locates, fetches or loads the data (a path, `download`, a worker count)
    is marked `Annotated[str, Locator()]` (`pcnbench.api.Locator`): cell ids leave it out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset, available without loading it."""

    input_shape: tuple[int, ...]  # one sample, e.g. (3, 32, 32)
    num_classes: int


@dataclass
class TensorSplits:
    """A dataset held in memory: float32 inputs in [0, 1] shaped (N, *input_shape), int64 labels.

    `mean`/`std` are per-channel statistics the session normalizes with after augmentation.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class FolderSplits:
    """A dataset too large for memory: map-style datasets yielding normalized (input, label).

    `train` applies the training augmentation; `calibration` is the training set without it.
    """

    train: Dataset
    test: Dataset
    calibration: Dataset
    num_workers: int = 4


class DatasetPlugin:
    """Contract of a dataset: cheap `info`, and `load` returning tensors or folder datasets."""

    name: str = ""
    Params: ClassVar[type[Params]] = Params

    def info(self, params: Any) -> DataInfo:
        """Describe the data (shape, classes) without loading it."""
        raise NotImplementedError

    def prepare(self, params: Any) -> None:
        """Make the data available for `load`, or raise DatasetMissingError saying what to do.

        Called once per distinct params by the driver before any cell trains: download here if
        the params ask for it; when the data is absent or unreadable, raise DatasetMissingError
        naming the folder looked in and a fix that fits the params as written (ParamError for a
        value that does not fit the data). The default does nothing.
        """

    def load(self, params: Any) -> TensorSplits | FolderSplits:
        """Load the data; raise DatasetMissingError when it is absent and not downloadable."""
        raise NotImplementedError


class ModelPlugin:
    """Contract of a model family: build a fresh, randomly initialized network."""

    name: str = ""
    Params: ClassVar[type[Params]] = Params

    def build(self, params: Any, info: DataInfo) -> nn.Module:
        """Return a new network for inputs `info.input_shape` and `info.num_classes` outputs."""
        raise NotImplementedError


@dataclass(frozen=True)
class EpochPlan:
    """The epochs one cell trains and why: what `Method.plan_epochs` returns.

    `trunk` holds the epochs the cell trains the plain dense network up to, in order (`(5,)` for
    a transform after epoch 5; `(1, 20)` for a rewind point, then the end): cells sharing a
    dense trunk train a stop another cell reached only once. `own` is everything after the cell
    leaves the trunk (transformed or masked training, fine-tuning, further levels). `why` says
    it in one line, naming the parameters and defaults that decide it, e.g.
    `12 = 2 + 10 fine-tune (magnitude.finetune_epochs default)`.
    """

    trunk: tuple[float, ...] | float = ()  # a number is one stop
    own: float = 0.0
    why: str = ""

    def __post_init__(self) -> None:
        trunk = (self.trunk,) if isinstance(self.trunk, (int, float)) else self.trunk
        stops = tuple(float(s) for s in trunk)
        if any(s < 0 for s in stops) or self.own < 0:
            raise ValueError(f"epochs must be non-negative: trunk {stops}, own {self.own}")
        object.__setattr__(self, "trunk", stops)

    @property
    def total(self) -> float:
        """The epochs the cell trains alone (no trunk shared with another cell)."""
        return (max(self.trunk) if self.trunk else 0.0) + self.own  # a tuple: see __post_init__


class Method:
    """Contract of a reduction method: `run` drives a session the way the algorithm reads."""

    name: str = ""
    Params: ClassVar[type[Params]] = Params
    # result columns that tell apart the rows one cell records (e.g. ("level",) for IMP):
    # the report shows each distinct value as its own operating point
    point_keys: ClassVar[tuple[str, ...]] = ()

    def check(self, params: Any, recipe: Recipe) -> None:
        """Reject values that conflict with the recipe by raising ParamError(key, message)."""

    def check_model(self, params: Any, model: nn.Module) -> None:
        """Reject values that do not fit the model (e.g. a layer pattern matching no layer).

        Called at validation with the model built on the meta device (no data, no weights);
        raise ParamError(key, message). `pcnbench.api.select_layers` does the usual check.
        """

    def plan_coverage(
        self, params: Any, model: nn.Module, input_shape: tuple[int, ...]
    ) -> Coverage | None:
        """What the method will reduce of `model` and leave dense, and why (None: it does not say).

        Called at validation with the model built on the meta device (no data, no weights;
        a forward pass on `input_shape` works). Where what happens depends on the data (a
        rank or component count chosen by energy), count the tensor as reduced: `validate`
        presents the share as "up to". `run` records the account of what really happened
        (`session.record(**coverage.columns())`).
        """
        return None

    def plan_epochs(
        self, params: Any, recipe: Recipe, steps_per_epoch: int | None = None
    ) -> EpochPlan | None:
        """The epochs a cell with `params` trains, and why (None: unknown, at least the recipe's).

        `validate`, `run --dry-run` and the GPU-hours projection show it before anything runs.
        `steps_per_epoch` is None where the data's size is not known yet (validation): a plan
        that needs it (a rewind point given in steps) approximates and says so in `why`.
        """
        return None

    def run(self, session: Session, params: Any) -> None:
        """Train, transform and record results through the session."""
        raise NotImplementedError

    def figures(self, data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
        """This method's own figures for the report (none by default).

        Called once per report when the results hold at least one row of this method;
        `colors` maps every method name in the results to the color the report uses for it.
        """
        return []


@dataclass(frozen=True)
class Reference:
    """A published result a suite lists beside its own (`references:`), e.g. a paper's figure.

    Reports draw and list it apart from the suite's results; it never enters a claim or a
    Pareto frontier. `model` is a short label such as `resnet(depth=20)` (None: not given);
    `accuracy` is a fraction in [0, 1]; at least one of `params` and `macs` is set.
    """

    label: str
    source: str
    dataset: str
    model: str | None
    accuracy: float
    params: int | None = None
    macs: int | None = None


@dataclass(frozen=True)
class ClaimCheck:
    """One expectation of a claim judged at one operating point, with the interval deciding it.

    `estimate`, `low` and `high` are in the expectation's own terms: a difference subject −
    baseline (accuracy in percentage points) or a ratio (`unit` "x"); `n` is the number of
    seeds paired (`paired`), the smaller side's count (unpaired, Welch), or the subject's seeds
    against a published value (`published`: a one-sample Student-t interval).
    """

    quantity: str  # a result column, e.g. "accuracy"
    expect: str  # the expectation as the suite wrote it, e.g. ">= -0.5pp"
    op: str  # ">=", ">", "<=" or "<"
    value: float  # the bound, in the unit below
    unit: str  # "pp", "x" or the quantity's own unit ("" for counts)
    estimate: float
    low: float
    high: float
    n: int
    paired: bool
    verdict: str  # "supported", "refuted" or "inconclusive"
    published: bool = False  # against a reference's published value (one-sample Student t)


@dataclass(frozen=True)
class ClaimPoint:
    """A claim judged at one operating point of its subject, and the cells behind it."""

    label: str  # the subject's setting, e.g. "pcn(keep=f0.0625)" or "lottery(levels=3) level 2"
    verdict: str  # "supported", "refuted" or "inconclusive"
    checks: tuple[ClaimCheck, ...]
    subject_cells: tuple[str, ...]  # cell ids
    baseline_cells: tuple[str, ...]


@dataclass(frozen=True)
class ClaimResult:
    """A suite's claim (`claims:`) judged from the stored results.

    `verdict` is "supported", "refuted", "inconclusive" or "not evaluated" (then `reason`
    says why: missing or failed cells, a claim the stored suite text cannot state). `over`
    is "any" (supported when some operating point is) or "all"; `decided_by` names the
    operating point that decided a supported or refuted verdict ("" when none alone did).
    """

    name: str
    verdict: str
    over: str = "any"
    subject: str = ""  # the selectors as written, e.g. "method=pcn"
    baseline: str = ""
    expect: tuple[str, ...] = ()  # "accuracy >= -0.5pp", ...
    points: tuple[ClaimPoint, ...] = ()
    decided_by: str = ""
    reason: str = ""
    source: str = ""  # where a published baseline's figures come from (a reference's source)


@dataclass
class ReportData:
    """Everything a reporter (or a method's `figures`) may use, read from one results database.

    `results` has one row per recorded result, with the columns of the result rows plus the
    cell's `suite`, `cell_id`, `label`, `dataset`, `model`, `method`, `seed`, `status` and
    `error`; `dataset_params`, `model_params` and `method_params` hold each grid point's
    parameters as dicts (defaults filled in), `method_setting` the parameters as the suite
    wrote them for this grid point (what tells it apart from the method's other points;
    likewise `dataset_setting` and `model_setting`). A database written before settings were
    stored gives the full parameters there. `cells` holds the same columns, parsed alike.

    `methods` maps each method in the results whose plugin is installed to its `Method` (its
    `point_keys` and `figures`); a method no longer installed is absent and its results are
    reported without point keys or figures of its own.

    `claims` holds the suite's claims judged from these results (see `ClaimResult`) and
    `references` the published results it lists (see `Reference`), both read from the suite
    text of the last run.

    `figure_formats` are the file formats the user asked figures in (`pcnbench report
    --formats`; SVG first, always): a reporter that saves figures writes each in all of them.
    """

    output_dir: Path
    suite: str
    results: pd.DataFrame  # one row per result (failed cells: one row with status and error)
    epochs: pd.DataFrame  # per-epoch records
    phases: pd.DataFrame  # metered phases
    runs: pd.DataFrame  # runs with suite text and environment (JSON)
    cells: pd.DataFrame  # cells with config (JSON), status, error
    methods: dict[str, Method] = field(default_factory=dict)
    figure_formats: tuple[str, ...] = ("svg",)
    claims: list[ClaimResult] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)


@dataclass
class ReportFigure:
    """A figure a method adds to the report: saved as SVG, PDF and PNG and shown in the HTML.

    `figure` is a matplotlib Figure (the report closes it after saving); with `figure` None,
    `skipped` says why there is nothing to draw and the report shows that sentence instead.
    """

    name: str  # file stem, unique within the report, e.g. "pcn-spectra-digits-mlp"
    title: str
    caption: str
    figure: Any = None
    skipped: str = ""


class Reporter:
    """Contract of a reporter: turn a results database's contents into files."""

    name: str = ""
    order: int = 100  # reporters run in ascending order; one may read files an earlier one wrote

    def render(self, data: ReportData, out_dir: Path) -> list[Path]:
        """Write this reporter's files under `out_dir` and return their paths."""
        raise NotImplementedError

    def tables(self, data: ReportData) -> dict[str, pd.DataFrame]:
        """This reporter's tables as DataFrames, by name (`pcnbench.load(...).comparison()`
        asks for "comparison"); none by default."""
        return {}

    def figures(self, data: ReportData) -> list[ReportFigure]:
        """This reporter's figures, drawn but not saved (`Results.figure(name)`); none by
        default. The caller owns (and closes) the matplotlib figures."""
        return []


@dataclass(frozen=True)
class MeterProbe:
    """What a meter can measure on this machine, and how (or why not)."""

    available: bool
    method: str  # e.g. "nvml_counter", "rapl", "codecarbon_estimate"
    detail: str  # devices or zones measured, or the reason it is unavailable


@dataclass(frozen=True)
class Reading:
    """One meter's figure for one window.

    `joules` is NaN when unmetered (then `method` is "unmetered" and `note` says why);
    `estimate` marks modelled figures (they never mix with measured ones).
    """

    component: str  # "gpu", "cpu", "dram", "machine", "memory", ...
    joules: float
    method: str
    estimate: bool = False
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)  # e.g. {"co2_kg": ...}


class Meter:
    """Contract of a meter: open a window, close it, report readings.

    Windows may overlap and nest (the session meters a phase and the evaluations inside it),
    so `start` returns a handle and must not reset shared state.
    """

    name: str = ""
    # False: skip windows nested in another (a time-based estimate is apportioned instead)
    nested: bool = True
    # phase kinds to meter ("train", "transform", "eval", ..., "cell"); None: every kind
    kinds: tuple[str, ...] | None = None

    def probe(self) -> MeterProbe:
        """Say what this meter can measure here (for `pcnbench env` and labels)."""
        raise NotImplementedError

    def configure(self, options: dict[str, Any]) -> None:
        """Take the suite's `metering.options` (each meter reads the keys it knows)."""

    def prepare(self) -> None:
        """Do slow one-time setup (called once per run, possibly in a background thread)."""

    def start(self) -> Any:
        """Open a window and return its handle."""
        raise NotImplementedError

    def stop(self, handle: Any) -> list[Reading]:
        """Close the window `handle` and return its readings (never raise for missing hardware)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (threads, library handles) at the end of a run."""


class ExecutorEvents(Protocol):
    """What an executor tells the driver, from the driver's thread, as cells progress."""

    def started(self, cell_id: str, device: str) -> None:
        """The cell began on `device` (e.g. "cuda:0", "cpu", "cuda@10.0.0.3")."""

    def progress(self, cell_id: str, step: int, total: int) -> None:
        """The cell reached optimizer step `step` of `total`."""

    def finished(self, cell_id: str, outcome: Outcome) -> None:
        """The cell ended: its outcome (failed with the reason when its worker died)."""


class Executor:
    """Contract of an executor: run a job's cells somewhere, hand each outcome to the driver.

    The executor alone decides where each cell runs: in the driver's process, in worker
    processes, on a cluster. Wherever that is, `pcnbench.api.run_cell(job.config, cell)`
    runs it. Only the driver writes the store: `run` reports every cell through `events`
    (in the driver's thread) and returns when all have finished. On KeyboardInterrupt it
    stops its workers and re-raises; the driver marks the cells still running interrupted.
    """

    name: str = ""
    # The executor's `executor.options` as a Params model: validated where the suite is read,
    # errors pointing into the YAML (None: `check` alone judges the options).
    Options: ClassVar[type[Params] | None] = None

    def probe(self) -> str:
        """Say in a line whether this executor can run here and with what (for `pcnbench env`)."""
        return "available"

    def check(self, job: Job) -> None:
        """Raise PcnbenchError if this executor cannot run `job` here (say what to install)."""

    def warm(self, jobs: int | str | None, device: str) -> None:
        """Start early what running cells will need; optional (the default does nothing).

        Called once by `pcnbench run` as soon as the suite is read, while the driver still
        validates it: `jobs` and `device` are the run's settings (the suite's, or the command
        line's). The local executor starts its worker server here. Do nothing that is not
        undone by the driver exiting; `run` must work whether or not this was called.
        """

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Run every cell of `job.cells` and report each through `events`."""
        raise NotImplementedError
