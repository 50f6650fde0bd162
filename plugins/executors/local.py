"""The `local` executor: cells in the driver's process, or in N worker processes.

A worker that dies fails only the cell it was running; a fresh worker takes the next cell.
With GPUs each worker is pinned to one GPU, and a suite's `resources: {gpus: 0.25}` packs
up to 4 workers onto each GPU (`cells_per_gpu`, `pool_size`, `assign_gpu`).

Workers are forked from a server process that has imported torch and pcnbench once
(multiprocessing's forkserver, started by `warm` while the driver validates the suite), so a
worker is ready in milliseconds instead of the seconds a fresh interpreter needs; where the
platform has no forkserver they are spawned.
"""

from __future__ import annotations

import atexit
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pcnbench.api import (
    Cell,
    CellQueue,
    Executor,
    ExecutorEvents,
    Job,
    Outcome,
    PcnbenchError,
    WorkerConfig,
    cpu_processes,
    prepare_process,
    resolve_device,
    run_cell,
    usable_cores,
)

__all__ = ["LocalExecutor", "LocalPool", "assign_gpu", "cells_per_gpu", "pool_size"]


def cells_per_gpu(gpus: float | None) -> int:
    """How many cells share one GPU at once for a cell's `resources.gpus` (None, 0 or 1: one).

    A fraction f in (0, 1) gives ⌊1/f⌋ cells (0.25: 4, 0.3: 3), as Ray packs fractional GPUs;
    more than 1 is refused by `LocalExecutor.check` before this is asked.
    """
    if not gpus or gpus >= 1:
        return 1
    return max(1, int(1 / gpus + 1e-9))


def pool_size(
    jobs: int | str | None,
    cells: int,
    devices: int,
    per_gpu: int = 1,
    lanes: int | None = None,
    cores: int | None = None,
) -> int:
    """How many cells run at once: worker processes, or 1 for the driver alone.

    On `devices` GPUs there are `devices × per_gpu` slots: `jobs` None or "auto" fills them,
    a number is capped by them. On the CPU (`devices` 0) `cpu_processes` decides: `jobs`, or
    with "auto" a worker per core (`cores`, default the usable ones) and per lane (groups of
    cells that can run apart, default every cell), else 1. Never more than the cells.
    """
    if devices > 0:
        slots = devices * max(1, per_gpu)
        wanted = slots if jobs is None or jobs == "auto" else min(int(jobs), slots)
        return max(1, min(wanted, cells))
    return cpu_processes(jobs, cells, cells if lanes is None else lanes, cores)


def assign_gpu(busy: Sequence[int | None], devices: int, per_gpu: int = 1) -> int | None:
    """The GPU (index) a new worker gets, given the GPUs of the workers alive now (`busy`).

    The least-loaded GPU that has a free slot, the lowest index among equals, so slots fill
    evenly and the slot a dead worker freed is the one its replacement takes when the others
    are full. None when there are no GPUs (`devices` 0) or every slot is taken: a GPU never
    holds more than `per_gpu` workers.
    """
    if devices <= 0:
        return None
    load = Counter(gpu for gpu in busy if gpu is not None)
    free = [gpu for gpu in range(devices) if load[gpu] < max(1, per_gpu)]
    return min(free, key=lambda gpu: (load[gpu], gpu)) if free else None


def _visible_gpus() -> list[str] | None:
    """The driver's CUDA_VISIBLE_DEVICES entries (what a worker's index must map to), if set."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


# What the worker server imports before it forks any worker: the cell path (torch included),
# torch's compiler front end, which torch's optimizers import on first use (about 1 s), and
# last what makes the server leave without tearing all that down when the driver ends.
PRELOAD = (
    "pcnbench.execution",
    "pcnbench_plugins.executors.local",
    "torch._dynamo",
    "pcnbench_plugins.executors._server_exit",
)


def worker_context() -> Any:
    """The multiprocessing context workers start from: the preloaded forkserver, else spawn.

    A forkserver is a fresh interpreter (it never ran a torch kernel or touched CUDA), so what
    it forks is as clean as a spawned process; each worker still receives the driver's
    sys.path and working directory, and sets its own device, threads and seeds.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))  # no effect once the server runs
    return context


class LocalExecutor(Executor):
    """Cells one after another in the driver, or in `jobs` worker processes (`auto`: per core)."""

    name = "local"

    def probe(self) -> str:
        """Always available: the driver process, or N worker processes with --jobs N|auto."""
        import multiprocessing

        how = (
            "forked from a preloaded server"
            if "forkserver" in multiprocessing.get_all_start_methods()
            else "spawned"
        )
        return (
            f"available: in the driver, or --jobs N|auto worker processes, {how}"
            f" ({usable_cores()} usable cores of {os.cpu_count()})"
        )

    def check(self, job: Job) -> None:
        """No options; the device must exist here; a cell gets one GPU, or a share of one."""
        if job.options:
            raise PcnbenchError(
                f"executor 'local' takes no options (got {', '.join(sorted(job.options))});"
                " use executor.jobs for worker processes"
            )
        device = resolve_device(job.config.device)
        if device.startswith("cuda") and job.gpus is not None and job.gpus > 1:
            raise PcnbenchError(
                f"resources.gpus: {job.gpus:g} GPUs per cell, but the local executor runs each"
                " cell on one GPU; use 1 (a GPU per cell), or a fraction such as 0.5 or 0.25 to"
                " run several cells on each GPU at once"
            )

    def warm(self, jobs: int | str | None, device: str) -> None:
        """Start the worker server now when the run asks for worker processes (`jobs` > 1, or
        "auto" where there is more than one core or a GPU may be used)."""
        if jobs is None or jobs == 1:
            return
        if jobs == "auto" and device == "cpu" and usable_cores() < 2:
            return
        context = worker_context()
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Run the cells in this process (one at a time) or a pool of worker processes."""
        import torch

        device = job.config.device
        on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        config = job.config
        gpus: list[int] = []
        if on_cuda:
            if device.startswith("cuda:"):  # that GPU only: each worker sees it as "cuda"
                gpus = [int(device.split(":", 1)[1])]
                config = replace(config, device="cuda")
            else:
                gpus = list(range(torch.cuda.device_count()))
        per_gpu = cells_per_gpu(job.gpus) if gpus else 1
        workers = pool_size(job.jobs, len(job.cells), len(gpus), per_gpu, job.lanes())
        if workers > 1:
            visible = _visible_gpus()
            ids = [visible[i] if visible and i < len(visible) else str(i) for i in gpus]
            # --threads each, or the usable cores divided so the workers do not oversubscribe
            config = replace(config, threads=job.config.threads_for(workers))
            LocalPool(config, workers, len(ids), per_gpu, ids).run(job, events)
            return
        device = prepare_process(job.config)
        for cell_id, cell in job.cells.items():
            events.started(cell_id, device)

            def progress(step: int, total: int, _cell: str = cell_id) -> None:
                events.progress(_cell, step, total)

            events.finished(cell_id, run_cell(job.config, cell, progress))


def _worker_main(config: WorkerConfig, conn: Any, gpu: str | None) -> None:
    """A pool worker: set up, then run the cells the driver sends until it sends None."""
    # Ctrl-C reaches the whole process group: the driver alone decides, and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # forked from the server, we inherit its quick exit (see _server_exit): not ours to keep
    atexit.unregister(os._exit)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        device = prepare_process(config)
    except Exception as exc:
        message = str(exc) if isinstance(exc, PcnbenchError) else traceback.format_exc()
        conn.send(("fatal", None, message))
        return
    if gpu is not None:
        device = f"{device} (GPU {gpu})"
    conn.send(("ready", None, device))
    while True:
        cell: Cell | None = conn.recv()
        if cell is None:
            # the exit handlers (plugins' included), which a worker forked from the server
            # would skip: multiprocessing ends it with os._exit
            atexit._run_exitfuncs()
            return
        conn.send(("started", cell.id, device))

        def progress(step: int, total: int, _cell: str = cell.id) -> None:
            conn.send(("progress", _cell, (step, total)))

        conn.send(("finished", cell.id, run_cell(config, cell, progress)))


@dataclass
class _Worker:
    process: Any
    conn: Any
    gpu: int | None  # the pool's index of its GPU (its slot's GPU); None on CPU
    cell: str | None = None
    ready: bool = False  # has said anything (a worker that dies before that cannot start)


class LocalPool:
    """N worker processes fed one cell at a time; a worker that dies fails its cell.

    With GPUs each worker sees one through CUDA_VISIBLE_DEVICES, at most `per_gpu` workers
    per GPU, the least-loaded GPU first (`assign_gpu`): a worker that replaces a dead one
    takes the slot it freed. On CPU the cores are divided between workers by the config's
    `threads`.
    """

    def __init__(
        self,
        config: WorkerConfig,
        jobs: int,
        gpus: int = 0,
        per_gpu: int = 1,
        gpu_ids: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.gpus = gpus
        self.per_gpu = max(1, per_gpu)
        # what each GPU index is in CUDA_VISIBLE_DEVICES (the driver's own list, where set)
        self.gpu_ids = list(gpu_ids) if gpu_ids is not None else [str(i) for i in range(gpus)]
        self.jobs = min(jobs, gpus * self.per_gpu) if gpus else jobs
        self._context = worker_context()
        self._workers: list[_Worker] = []
        self._retired: list[_Worker] = []  # told to exit; not waited for
        self._spawned = 0

    def _spawn(self) -> _Worker:
        gpu = assign_gpu([w.gpu for w in self._workers], self.gpus, self.per_gpu)
        if self.gpus and gpu is None:  # callers spawn only into a free slot
            raise RuntimeError(f"every GPU slot is taken ({self.gpus} × {self.per_gpu})")
        self._spawned += 1
        ours, theirs = self._context.Pipe()
        args = (self.config, theirs, self.gpu_ids[gpu] if gpu is not None else None)
        name = f"pcnbench-worker-{self._spawned}"
        process = self._context.Process(target=_worker_main, args=args, name=name, daemon=True)
        try:
            process.start()
        except OSError:
            if self._context.get_start_method() != "forkserver":
                raise
            # the server could not start here (no room for its socket, say): spawn instead
            import multiprocessing

            self._context = multiprocessing.get_context("spawn")
            process = self._context.Process(target=_worker_main, args=args, name=name, daemon=True)
            process.start()
        theirs.close()
        worker = _Worker(process, ours, gpu)
        self._workers.append(worker)
        return worker

    def _give(self, worker: _Worker, job: Job, cell_id: str | None) -> bool:
        """Send the worker its next cell (None: no work left, it exits); False if it is gone."""
        worker.cell = cell_id
        try:
            worker.conn.send(job.cells[cell_id] if cell_id is not None else None)
        except OSError:  # it died: the caller reaps it (and fails `cell_id`)
            return False
        return True

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Run every cell of `job` and report through `events`; returns when all finished.

        Cells of one trunk group (`job.groups`) stay on one worker, one after another, so
        the later ones reuse what the earlier ones cached. Whatever `events` raises (a
        HaltError, Ctrl-C) stops every worker before it propagates.
        """
        from multiprocessing.connection import wait

        queue = CellQueue(list(job.cells), job.groups)
        try:
            for _ in range(min(self.jobs, len(queue))):
                self._give(self._spawn(), job, queue.next())
            while self._workers:
                waits = [w.conn for w in self._workers] + [
                    w.process.sentinel for w in self._workers
                ]
                ready = wait(waits)
                for worker in list(self._workers):
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    died = self._drain(worker, job, queue, events)
                    if died or (worker.process.sentinel in ready and worker in self._workers):
                        self._reap(worker, job, queue, events)
            # every cell is done: the workers, told so, end on their own (running their exit
            # handlers); stragglers are stopped below
            deadline = time.monotonic() + 5.0
            for worker in self._retired:
                worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            self.close()

    def _drain(self, worker: _Worker, job: Job, queue: CellQueue, events: ExecutorEvents) -> bool:
        """Handle what `worker` sent; True if its pipe broke (it died).

        Only reading the pipe counts as the worker's failure: an error the driver's `events`
        raise (an OSError included) propagates.
        """
        while True:
            try:
                if not worker.conn.poll():
                    return False
                kind, cell_id, payload = worker.conn.recv()
            except (EOFError, OSError):
                return True
            worker.ready = True
            if kind == "fatal":
                raise PcnbenchError(f"a worker process could not start: {payload}")
            if kind == "started":
                events.started(cell_id, payload)
            elif kind == "progress":
                events.progress(cell_id, *payload)
            elif kind == "finished":
                worker.cell = None
                events.finished(cell_id, payload)
                following = queue.next(after=cell_id)
                if following is None:  # nothing to wait for: let it exit
                    self._give(worker, job, None)
                    self._workers.remove(worker)
                    self._retired.append(worker)
                    return False
                if not self._give(worker, job, following):
                    return True

    def _reap(self, worker: _Worker, job: Job, queue: CellQueue, events: ExecutorEvents) -> None:
        """A worker ended: fail its cell and start a fresh worker, in its slot, if work is left."""
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            return
        self._workers.remove(worker)
        code = worker.process.exitcode
        if not worker.ready:
            raise PcnbenchError(
                f"a worker process (pid {worker.process.pid}) ended before it could start"
                f" (exit code {code}); its error is on stderr above"
            )
        if worker.cell is None:
            return
        killed = code is not None and code < 0
        why = f"killed by signal {-code}" if killed else f"exit code {code}"
        events.finished(
            worker.cell,
            Outcome(
                "failed",
                error=f"worker process pid {worker.process.pid} died ({why})"
                " while running this cell; the next run retries it",
            ),
        )
        if len(queue):
            self._give(self._spawn(), job, queue.next())

    def close(self, grace_s: float = 5.0) -> None:
        """Stop every worker still running (on an error or Ctrl-C in the driver).

        SIGTERM, which ends a worker even while it is blocked sending on a full pipe; any
        still alive after `grace_s` in all is killed.
        """
        workers = self._workers + self._retired
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + grace_s
        for worker in workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self._workers.clear()
        self._retired.clear()
