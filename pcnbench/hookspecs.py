"""Every hook a pcnbench plugin can implement; this module is the extension API.

A plugin is a module (or object) exposed under the ``pcnbench`` entry-point group whose
functions are decorated with :data:`hookimpl`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pcnbench.cells import Cell
    from pcnbench.records import EpochRecord

hookspec = pluggy.HookspecMarker("pcnbench")
hookimpl = pluggy.HookimplMarker("pcnbench")

# `register(obj)`: the callable each register_* hook receives
Register = Callable[[Any], None]


@hookspec
def register_methods(register: Register) -> None:
    """Register reduction methods: call ``register(m)`` with each `pcnbench.api.Method`."""


@hookspec
def register_models(register: Register) -> None:
    """Register model families: call ``register(m)`` with each `pcnbench.api.ModelPlugin`."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: call ``register(d)`` with each `pcnbench.api.DatasetPlugin`."""


@hookspec
def register_meters(register: Register) -> None:
    """Register meters: call ``register(m)`` with each `pcnbench.api.Meter`."""


@hookspec
def register_reporters(register: Register) -> None:
    """Register reporters: call ``register(r)`` with each `pcnbench.api.Reporter`."""


@hookspec
def register_executors(register: Register) -> None:
    """Register executors: call ``register(e)`` with each `pcnbench.api.Executor`."""


@hookspec
def on_cell_start(cell: Cell) -> None:
    """Called before a cell trains, in the process that runs it, with its `pcnbench.api.Cell`."""


@hookspec
def on_epoch_end(cell: Cell, record: EpochRecord) -> None:
    """Called after each training epoch with the cell and its `pcnbench.api.EpochRecord`."""


@hookspec
def on_cell_end(cell: Cell, status: str, results: list[dict[str, Any]], error: str | None) -> None:
    """Called in the driver after a cell ends (done, failed or interrupted) with its result rows.

    `error` is why a cell did not finish (None when it is done); an implementation may leave
    out any argument it does not use.
    """
