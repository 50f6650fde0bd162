"""The public surface a plugin builds on; with `pcnbench.hookspecs`, the whole plugin API.

Plugins import from here and from `pcnbench.hookspecs` only: everything else in `pcnbench`
may change between releases. `docs/plugins.md` is the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcnbench.cells import Cell, Choice, Locator
from pcnbench.contracts import (
    ClaimCheck,
    ClaimPoint,
    ClaimResult,
    DataInfo,
    DatasetPlugin,
    EpochPlan,
    Executor,
    ExecutorEvents,
    FolderSplits,
    Meter,
    MeterProbe,
    Method,
    ModelPlugin,
    Params,
    Reading,
    Reference,
    ReportData,
    Reporter,
    ReportFigure,
    TensorSplits,
)
from pcnbench.coverage import Coverage, LeftDense, Reason, coverage_of
from pcnbench.errors import DatasetMissingError, HaltError, ParamError, PcnbenchError
from pcnbench.jobs import CellQueue, Job, Outcome, WorkerConfig, cpu_processes, usable_cores
from pcnbench.labels import is_missing, result_tags
from pcnbench.manager import Family, load_plugins
from pcnbench.patterns import Patterns
from pcnbench.protocols import Session, Snapshot
from pcnbench.recipe import Recipe
from pcnbench.records import EpochRecord, PhaseRecord
from pcnbench.stats import Estimate, mean_ci, paired_delta, student_t_cdf, t_quantile, welch_delta
from pcnbench.steps import StepSpec, parse_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    from pcnbench.data import derive_seed
    from pcnbench.layers import WEIGHTED, called_layers, layer_names, select_layers, weight_names
    from pcnbench.masks import Masked, MaskEnforcer, mask_density, masked_parameters, set_mask
    from pcnbench.modes import eval_mode
    from pcnbench.optim import exclude_from_weight_decay

# Names whose modules import torch: resolved on first use (PEP 562), so that loading plugins
# and validating a suite never import torch.
_LAZY = {
    "derive_seed": "data",
    "WEIGHTED": "layers",
    "called_layers": "layers",
    "layer_names": "layers",
    "weight_names": "layers",
    "select_layers": "layers",
    "Masked": "masks",
    "MaskEnforcer": "masks",
    "mask_density": "masks",
    "masked_parameters": "masks",
    "set_mask": "masks",
    "eval_mode": "modes",
    "exclude_from_weight_decay": "optim",
}


def __getattr__(name: str) -> Any:
    """Import a torch-dependent name of the API on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module == "data":
        from pcnbench import data as found
    elif module == "layers":
        from pcnbench import layers as found
    elif module == "masks":
        from pcnbench import masks as found
    elif module == "modes":
        from pcnbench import modes as found
    else:
        from pcnbench import optim as found
    value = getattr(found, name)
    globals()[name] = value  # once resolved, a plain module attribute
    return value


def __dir__() -> list[str]:
    """Every name of the module, the ones not imported yet included."""
    return sorted({*globals(), *_LAZY})


__all__ = [
    "WEIGHTED",
    "Cell",
    "CellQueue",
    "Choice",
    "ClaimCheck",
    "ClaimPoint",
    "ClaimResult",
    "Coverage",
    "DataInfo",
    "DatasetMissingError",
    "DatasetPlugin",
    "EpochPlan",
    "EpochRecord",
    "Estimate",
    "Executor",
    "ExecutorEvents",
    "Family",
    "FolderSplits",
    "HaltError",
    "Job",
    "LeftDense",
    "Locator",
    "MaskEnforcer",
    "Masked",
    "Meter",
    "MeterProbe",
    "Method",
    "ModelPlugin",
    "Outcome",
    "ParamError",
    "Params",
    "Patterns",
    "PcnbenchError",
    "PhaseRecord",
    "Reading",
    "Reason",
    "Recipe",
    "Reference",
    "ReportData",
    "ReportFigure",
    "Reporter",
    "Session",
    "Snapshot",
    "StepSpec",
    "TensorSplits",
    "WorkerConfig",
    "called_layers",
    "coverage_of",
    "cpu_processes",
    "derive_seed",
    "eval_mode",
    "exclude_from_weight_decay",
    "is_missing",
    "layer_names",
    "load_plugins",
    "mask_density",
    "masked_parameters",
    "mean_ci",
    "paired_delta",
    "parse_steps",
    "prepare_process",
    "resolve_device",
    "result_tags",
    "run_cell",
    "select_layers",
    "set_mask",
    "student_t_cdf",
    "t_quantile",
    "usable_cores",
    "weight_names",
    "welch_delta",
]


def run_cell(
    config: WorkerConfig, cell: Cell, on_progress: Callable[[int, int], None] | None = None
) -> Outcome:
    """Run `cell` in this process and return its outcome (what an executor's worker calls).

    The process keeps one context per `config` (plugins, device, meters, the dataset last
    loaded), built on first use, so later cells in the same process start at once.
    `on_progress(step, total)` is called as training advances. Never raises for a failing
    cell: the outcome says "failed" with the error (a PcnbenchError's message, else the
    traceback). KeyboardInterrupt propagates.
    """
    from pcnbench.execution import run_cell as run

    return run(config, cell, on_progress)


def prepare_process(config: WorkerConfig) -> str:
    """Set this process up for `config` now (plugins, device, meters); return the device.

    A worker calls it before its first cell so that a setup error (a plugin that cannot be
    rebuilt, a missing GPU) stops the run instead of failing cells; `run_cell` does it anyway.
    """
    from pcnbench.execution import prepare_process as prepare

    return prepare(config)


def resolve_device(wanted: str) -> str:
    """Resolve a suite's `device` (auto, cpu, cuda, cuda:N, mps) here; PcnbenchError if absent."""
    from pcnbench.execution import resolve_device as resolve

    return resolve(wanted)
