"""Built-in executors: `local` (in the driver, or N worker processes), `ray` (a Ray cluster)
and `slurm` (SLURM jobs, through submitit).

All hand each cell's outcome back to the driver, which alone writes the results database,
and all run a cell the way every process does: `pcnbench.api.run_cell`.
"""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl
from pcnbench_plugins.executors.local import LocalExecutor
from pcnbench_plugins.executors.ray_cluster import RayExecutor
from pcnbench_plugins.executors.slurm import SlurmExecutor

__all__ = ["LocalExecutor", "RayExecutor", "SlurmExecutor"]


@hookimpl
def register_executors(register: Register) -> None:
    """Register the local, Ray and SLURM executors."""
    register(LocalExecutor())
    register(RayExecutor())
    register(SlurmExecutor())
