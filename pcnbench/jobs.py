"""A run's work as executors see it: the cells, the settings a process needs to run them,
and what running one cell produced."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pcnbench.cells import Cell

__all__ = ["CellQueue", "Job", "Outcome", "WorkerConfig", "cpu_processes", "usable_cores"]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _omp_threads() -> int:
    """OMP_NUM_THREADS as a positive count; 0 where it is unset or not one."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return 0


@dataclass(frozen=True)
class WorkerConfig:
    """What any process needs to run cells of a run (small, picklable; no suite to re-read)."""

    output: str  # the output directory, absolute
    cwd: str  # the driver's working directory: relative dataset roots resolve against it
    device: str  # as asked: "auto", "cpu", "cuda", "cuda:N" or "mps"; each process resolves it
    deterministic: bool = False
    meters: tuple[str, ...] | None = None  # meter names; None: metering off
    meter_options: tuple[tuple[str, Any], ...] = ()  # the suite's metering.options
    share: bool = True  # reuse the shared dense trunk
    checkpoint_every_s: float | None = 60.0  # None: no cell checkpoints
    threads: int = 0  # torch CPU threads per process (--threads); 0: the default, `threads_for`
    # plugins registered in code: (name, importable reference, or None where there is none)
    plugins_in_code: tuple[tuple[str, str | None], ...] = ()

    def threads_for(self, processes: int = 1) -> int:
        """Torch threads for each of `processes` processes running cells at once here.

        `threads` when set (--threads); else OMP_NUM_THREADS where set; else the cores this
        process may use, divided among the processes (at least 1 each).
        """
        if self.threads > 0:
            return self.threads
        return _omp_threads() or max(1, usable_cores() // max(1, processes))


@dataclass
class Outcome:
    """What running one cell produced, in any process: the driver stores it."""

    # done | failed | halted (the machine cannot go on: the run stops, see HaltError) |
    # interrupted (not the cell's fault, e.g. its cluster job was cancelled: stored so, the
    # next run resumes it from its checkpoint, the run goes on)
    status: str
    error: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[Any] = field(default_factory=list)  # EpochRecords
    phases: list[Any] = field(default_factory=list)  # PhaseRecords
    wall_time_s: float = 0.0
    cell_columns: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the cell warned of, each once


@dataclass
class Job:
    """One run's work: the cells to run and how; `pcnbench.api.run_cell` runs one of them."""

    config: WorkerConfig
    cells: dict[str, Cell]  # the cells to run, by id, in suite order
    # how many cells at once (the local executor's worker processes); None: the executor
    # decides (local: one on the CPU, every GPU slot `gpus` allows on CUDA); "auto": as many
    # as run well here (local: `cpu_processes` on the CPU, every GPU slot on CUDA)
    jobs: int | str | None = None
    address: str | None = None  # a cluster to join (executors that have one)
    options: dict[str, Any] = field(default_factory=dict)  # the suite's executor.options
    cpus: float = 1.0  # per cell
    gpus: float | None = 0.0  # per cell; None: the executor decides (device "auto")
    # cell id → its dense-trunk group: cells of a group share a trunk, so they do best one
    # after another where one can reuse what the other cached (empty: sharing is off)
    groups: dict[str, str] = field(default_factory=dict)

    def lanes(self) -> int:
        """How many groups of cells can run apart: a trunk group is one, a lone cell is one."""
        return len({self.groups.get(cell_id, cell_id) for cell_id in self.cells})


def cpu_processes(jobs: int | str | None, cells: int, lanes: int, cores: int | None = None) -> int:
    """How many processes run cells at once on the CPU (1: the driver alone).

    `jobs` when it is a number; "auto": one per usable core (`cores`), but no more than the
    `lanes` (groups of cells that can run apart: the cells of a trunk group run one after
    another, so a second worker on one group would wait or train its trunk again); None: 1.
    Never more than the cells.
    """
    if jobs == "auto":
        wanted = min(usable_cores() if cores is None else cores, max(1, lanes))
    elif isinstance(jobs, int):
        wanted = jobs
    else:
        wanted = 1
    return max(1, min(wanted, cells))


class CellQueue:
    """Hands out cells so that cells sharing a dense trunk run one after another.

    A worker that finished a cell gets the next cell of the same trunk group; otherwise the
    first cell of a group nobody has started; otherwise (with `steal`) the next cell of the
    group with the most cells left, so no worker idles while work remains.
    """

    def __init__(self, cell_ids: list[str], groups: dict[str, str] | None = None) -> None:
        self._groups: dict[str, deque[str]] = {}
        self._group_of: dict[str, str] = {}
        for cell_id in cell_ids:
            group = (groups or {}).get(cell_id, cell_id)
            self._group_of[cell_id] = group
            self._groups.setdefault(group, deque()).append(cell_id)
        self._fresh = deque(self._groups)  # groups in suite order, none started yet

    def __len__(self) -> int:
        return sum(len(q) for q in self._groups.values())

    def next(self, after: str | None = None, steal: bool = True) -> str | None:
        """The cell to run next on a worker that just finished `after` (None: a new worker)."""
        if after is not None:
            same = self._groups.get(self._group_of[after])
            if same:
                return same.popleft()
        while self._fresh:
            group = self._groups[self._fresh.popleft()]
            if group:
                return group.popleft()
        if not steal:
            return None
        fullest = max(self._groups.values(), key=len, default=None)
        return fullest.popleft() if fullest else None
