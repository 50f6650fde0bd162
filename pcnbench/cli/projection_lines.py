"""What a dry run projects: the hours the cells still to run take here, measured per grid point."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcnbench.errors import PcnbenchError

if TYPE_CHECKING:
    from pcnbench.cells import Cell
    from pcnbench.contracts import EpochPlan
    from pcnbench.manager import PluginHost
    from pcnbench.projection import GridPoint
    from pcnbench.suite import LoadedSuite
    from pcnbench.timing import EpochTiming


def projection_text(
    todo: list[Cell], loaded: LoadedSuite, host: PluginHost, device: str, share: bool
) -> str:
    """The GPU-hours the cells still to run take here, from epoch times measured per grid point."""
    from pcnbench.execution import resolve_device
    from pcnbench.projection import grid_point, project_plan
    from pcnbench.timing import measure_epoch_seconds, train_size

    where = resolve_device(device)
    sizes: dict[str, int] = {}  # each dataset loaded once, for its size
    timings: dict[GridPoint, EpochTiming] = {}
    for cell in todo:  # the first cell of each grid point stands for it
        point = grid_point(cell)
        if point not in timings:
            if point.dataset not in sizes:
                sizes[point.dataset] = train_size(cell, host)
            samples = sizes[point.dataset]
            timings[point] = measure_epoch_seconds(cell, host, where, samples=samples)

    def plan(cell: Cell) -> EpochPlan | None:
        spe = timings[grid_point(cell)].steps_per_epoch
        return host.methods.get(cell.method.name).plan_epochs(cell.method.params, cell.recipe, spe)

    seconds = {point: t.seconds for point, t in timings.items()}
    projection = project_plan(
        todo, seconds, gpus=loaded.suite.resources.gpus, share=share, epochs_of=plan
    )
    unit = "GPU-hours" if where.startswith("cuda") else "hours"
    lines = [projection.summary().replace("GPU-hours", f"{unit} on {where}", 1)]
    lines.extend(
        f"  {point}: {t.seconds:,.1f} s per epoch ({t.steps_per_epoch:,} steps × "
        f"{1000 * t.step_s:,.1f} ms measured over {t.steps_timed} steps on random inputs)"
        for point, t in timings.items()
    )
    return "\n".join(lines)


def on_cuda(device: str) -> bool:
    """Whether cells would run on a CUDA GPU here (planning for an absent one: no)."""
    from pcnbench.execution import resolve_device

    try:
        return resolve_device(device).startswith("cuda")
    except PcnbenchError:  # e.g. a suite for a GPU machine, planned on a laptop
        return False
