"""Built-in executors: `local` (in the driver, or N worker processes) and `ray` (a cluster).

Both hand each cell's outcome back to the driver, which alone writes the results database,
and both run a cell the way every process does: `pcnbench.api.run_cell`.
"""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl
from pcnbench_plugins.executors.local import LocalExecutor
from pcnbench_plugins.executors.ray_cluster import RayExecutor

__all__ = ["LocalExecutor", "RayExecutor"]


@hookimpl
def register_executors(register: Register) -> None:
    """Register the local and Ray executors."""
    register(LocalExecutor())
    register(RayExecutor())
