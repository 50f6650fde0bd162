"""How many GPU-hours a planned run takes: measured epoch times × the epochs each cell trains.

A plan is a list of cells (`LoadedSuite.cells`, or the cells still to run). Per-epoch seconds
are measured per (dataset, model) grid point — all cells of one point train the same network
on the same data, so one short timed run of a few steps, scaled to an epoch, serves them all.
`project_plan` multiplies those by the epochs each cell trains, trains a dense trunk once per
trunk group when sharing is on (cells with the same dataset, model, seed and recipe, as the
runner groups them), and divides by the cells that share one GPU (`resources.gpus` 0.25: four)
times a packing efficiency (measured, else 1: perfect packing, said so).

The core knows nothing about methods: how many epochs a cell trains beyond `recipe.epochs`
(fine-tuning, IMP levels) and how much of it is the plain dense trunk come from `epochs_of`,
a callable the caller passes. Without it each cell counts its `recipe.epochs` and nothing is
shared, and the projection says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from pcnbench.cells import Cell, canonical, cell_config
from pcnbench.contracts import EpochPlan

__all__ = [
    "GridPoint",
    "Projection",
    "cells_per_gpu",
    "epoch_seconds_from_steps",
    "grid_point",
    "grid_points",
    "project_plan",
]


class GridPoint(NamedTuple):
    """A (dataset, model) grid point, each written `name` or `name(key=value,...)`.

    The params are those that tell cells apart (defaults and data locators left out), so
    `cifar10(root=data)` and `cifar10(root=/scratch)` are one point.
    """

    dataset: str
    model: str

    def __str__(self) -> str:
        return f"{self.dataset} · {self.model}"


EpochsOf = Callable[[Cell], EpochPlan | None]


@dataclass(frozen=True)
class Projection:
    """GPU-hours of a plan, with what they were computed from."""

    gpu_hours: float  # the projection: sharing and packing applied
    serial_hours: float  # one cell at a time on one GPU, sharing applied
    unshared_hours: float  # one cell at a time, every cell trains alone
    epochs: float  # epochs trained, sharing applied
    unshared_epochs: float  # epochs trained if every cell ran alone
    cells: int
    cells_per_gpu: int  # cells running at once on one GPU (from resources.gpus)
    gpus_per_cell: float  # GPUs one cell holds (1 when it holds one or a share of one)
    packing_efficiency: float  # packed throughput / (cells_per_gpu × one cell's)
    packing_measured: bool  # False: the efficiency is the default 1 (perfect packing)
    shared: bool  # trunk sharing applied
    counted_from_recipe: int  # cells counted at recipe.epochs alone (no epoch plan for them)
    hours_by_point: dict[GridPoint, float] = field(default_factory=dict)  # serial, per point
    epochs_by_cell: dict[str, float] = field(default_factory=dict)  # trained, sharing applied

    @property
    def at_least(self) -> bool:
        """Whether some cell's fine-tuning is unknown, so the figure is a lower bound on it."""
        return self.counted_from_recipe > 0

    def summary(self) -> str:
        """One line to print with a plan, e.g. under `pcnbench run --dry-run`."""
        bound = "at least " if self.at_least else ""
        parts = [f"projected {bound}{self.gpu_hours:,.2f} GPU-hours for {self.cells:,} cells"]
        parts.append(f"{self.epochs:,.0f} epochs")
        if self.shared:
            parts.append(f"shared trunks save {self.unshared_epochs - self.epochs:,.0f} epochs")
        if self.cells_per_gpu > 1:
            how = (
                f"packing efficiency {self.packing_efficiency:.2f} measured"
                if self.packing_measured
                else "assuming perfect packing (efficiency 1, unmeasured)"
            )
            parts.append(f"{self.cells_per_gpu} cells per GPU, {how}")
        if self.at_least:
            parts.append(
                f"{self.counted_from_recipe:,} cells counted at recipe.epochs: "
                "their fine-tuning and shared trunks are not counted"
            )
        return "; ".join(parts)


def _label(name: str, params: Mapping[str, object]) -> str:
    if not params:
        return name
    inner = ",".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
        for k, v in sorted(params.items())
    )
    return f"{name}({inner})"


def grid_point(cell: Cell) -> GridPoint:
    """The (dataset, model) grid point of a cell: what its per-epoch time depends on."""
    dataset = canonical(cell.dataset, for_id=True)
    model = canonical(cell.model, for_id=True)
    return GridPoint(
        _label(dataset["name"], dataset["params"]), _label(model["name"], model["params"])
    )


def grid_points(cells: Sequence[Cell]) -> list[GridPoint]:
    """The distinct grid points of a plan, in the plan's order: the ones to measure."""
    return list(dict.fromkeys(grid_point(c) for c in cells))


def cells_per_gpu(gpus: float | None) -> int:
    """Cells sharing one GPU at once for a `resources.gpus` of `gpus` (0.25: 4, 0.3: 3).

    None, 0 or 1 and more give 1, as the local and Ray executors pack fractional GPUs.
    """
    if not gpus or gpus >= 1:
        return 1
    return max(1, int(1 / gpus + 1e-9))


def epoch_seconds_from_steps(
    step_seconds: float, n_train: int, batch_size: int, validation_split: float = 0.0
) -> float:
    """Seconds of one epoch from one optimizer step's: steps per epoch × step time.

    An epoch has ⌈n/batch⌉ steps over the training samples left after the validation split.
    """
    n = n_train - round(n_train * validation_split)
    return step_seconds * math.ceil(n / batch_size)


def _trunk_group(cell: Cell) -> str:
    # as the runner groups cells (execution.trunk_group): everything but the method
    config = cell_config(cell.dataset, cell.model, cell.method, cell.seed, cell.recipe, for_id=True)
    del config["method"]
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def project_plan(
    cells: Sequence[Cell],
    epoch_seconds: Mapping[GridPoint, float],
    *,
    gpus: float | None = None,
    packing_efficiency: float | None = None,
    share: bool = True,
    epochs_of: EpochsOf | None = None,
) -> Projection:
    """Project the GPU-hours of training `cells` from measured per-epoch seconds per grid point.

    `epoch_seconds` maps each `grid_point` of the cells to the seconds one epoch takes there
    (KeyError naming the missing points otherwise). `gpus` is the suite's `resources.gpus`:
    a fraction packs ⌊1/gpus⌋ cells on one GPU, more than 1 charges that many GPUs per cell.
    `packing_efficiency` is packed throughput over ⌊1/gpus⌋ × one cell's alone (None: 1, said
    so). `share` trains each trunk group's dense trunk once. `epochs_of(cell)` gives the epochs
    a cell trains (None for a cell it cannot plan); without it, or where it returns None, the
    cell counts `recipe.epochs`, unshared, and the projection is a lower bound (`at_least`).
    """
    missing = [p for p in grid_points(cells) if p not in epoch_seconds]
    if missing:
        raise KeyError(f"no epoch time for grid point(s): {', '.join(map(str, missing))}")
    if packing_efficiency is not None and not packing_efficiency > 0:
        raise ValueError(f"packing_efficiency must be positive, got {packing_efficiency}")
    reached: dict[str, set[float]] = {}
    serial = unshared = epochs = unshared_epochs = 0.0
    from_recipe = 0
    by_point: dict[GridPoint, float] = {}
    by_cell: dict[str, float] = {}
    for cell in cells:
        plan = epochs_of(cell) if epochs_of is not None else None
        if plan is None:
            plan = EpochPlan(trunk=(), own=float(cell.recipe.epochs))
            from_recipe += 1
        trained = plan.own
        if share:
            cache = reached.setdefault(_trunk_group(cell), set())
            at = 0.0
            for stop in plan.trunk:
                # as the runner: restore the latest stored state at or below the stop
                best = max((s for s in cache if at < s <= stop), default=at)
                trained += stop - best
                cache.add(stop)
                at = max(at, stop)
        else:
            trained = plan.total
        point = grid_point(cell)
        seconds = epoch_seconds[point]
        epochs += trained
        by_cell[cell.id] = by_cell.get(cell.id, 0.0) + trained
        unshared_epochs += plan.total
        serial += trained * seconds
        unshared += plan.total * seconds
        by_point[point] = by_point.get(point, 0.0) + trained * seconds / 3600
    per_gpu = cells_per_gpu(gpus)
    per_cell = float(gpus) if gpus is not None and gpus > 1 else 1.0
    efficiency = 1.0 if packing_efficiency is None else float(packing_efficiency)
    if per_gpu == 1:
        efficiency = 1.0  # nothing is packed
    gpu_hours = serial / 3600 * per_cell / (per_gpu * efficiency)
    return Projection(
        gpu_hours=gpu_hours,
        serial_hours=serial / 3600 * per_cell,
        unshared_hours=unshared / 3600 * per_cell,
        epochs=epochs,
        unshared_epochs=unshared_epochs,
        cells=len(cells),
        cells_per_gpu=per_gpu,
        gpus_per_cell=per_cell,
        packing_efficiency=efficiency,
        packing_measured=packing_efficiency is not None and per_gpu > 1,
        shared=share,
        counted_from_recipe=from_recipe,
        hours_by_point=by_point,
        epochs_by_cell=by_cell,
    )
