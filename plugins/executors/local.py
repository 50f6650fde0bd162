"""The `local` executor: cells in the driver's process, or in N spawned worker processes.

A worker that dies fails only the cell it was running; a fresh worker takes the next cell.
"""

from __future__ import annotations

import os
import signal
import traceback
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
    prepare_process,
    resolve_device,
    run_cell,
)

__all__ = ["LocalExecutor", "LocalPool"]


class LocalExecutor(Executor):
    """Cells one after another in the driver, or in `jobs` spawned worker processes."""

    name = "local"

    def probe(self) -> str:
        """Always available: the driver process, or N worker processes with --jobs N."""
        return f"available: in the driver, or --jobs N worker processes ({os.cpu_count()} cores)"

    def check(self, job: Job) -> None:
        """Local execution takes no options; the device must exist here."""
        if job.options:
            raise PcnbenchError(
                f"executor 'local' takes no options (got {', '.join(sorted(job.options))});"
                " use executor.jobs for worker processes"
            )
        resolve_device(job.config.device)

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Run the cells in this process (one at a time) or a pool of worker processes."""
        workers = min(job.jobs, len(job.cells))
        if workers > 1:
            import torch

            device = job.config.device
            on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
            gpus = torch.cuda.device_count() if on_cuda else 0
            # --threads each, or the usable cores divided so the workers do not oversubscribe
            threads = job.config.threads_for(workers)
            LocalPool(replace(job.config, threads=threads), workers, gpus).run(job, events)
            return
        device = prepare_process(job.config)
        for cell_id, cell in job.cells.items():
            events.started(cell_id, device)

            def progress(step: int, total: int, _cell: str = cell_id) -> None:
                events.progress(_cell, step, total)

            events.finished(cell_id, run_cell(job.config, cell, progress))


def _worker_main(config: WorkerConfig, conn: Any, gpu: int | None) -> None:
    """A pool worker: set up, then run the cells the driver sends until it sends None."""
    # Ctrl-C reaches the whole process group: the driver alone decides, and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
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
            return
        conn.send(("started", cell.id, device))

        def progress(step: int, total: int, _cell: str = cell.id) -> None:
            conn.send(("progress", _cell, (step, total)))

        conn.send(("finished", cell.id, run_cell(config, cell, progress)))


@dataclass
class _Worker:
    process: Any
    conn: Any
    gpu: int | None
    cell: str | None = None
    ready: bool = False  # has said anything (a worker that dies before that cannot start)


class LocalPool:
    """N spawned worker processes fed one cell at a time; a worker that dies fails its cell.

    With GPUs each worker sees one through CUDA_VISIBLE_DEVICES (round robin); on CPU the
    cores are divided between workers by the config's `threads`.
    """

    def __init__(self, config: WorkerConfig, jobs: int, gpus: int = 0) -> None:
        import multiprocessing

        self.config = config
        self.jobs = jobs
        self.gpus = gpus
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._retired: list[_Worker] = []  # told to exit; not waited for
        self._spawned = 0

    def _spawn(self) -> _Worker:
        gpu = self._spawned % self.gpus if self.gpus else None
        self._spawned += 1
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(self.config, theirs, gpu),
            name=f"pcnbench-worker-{self._spawned}",
            daemon=True,
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours, gpu)
        self._workers.append(worker)
        return worker

    def _give(self, worker: _Worker, job: Job, cell_id: str | None) -> None:
        """Send the worker its next cell (None: no work left, it exits)."""
        worker.cell = cell_id
        worker.conn.send(job.cells[cell_id] if cell_id is not None else None)

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Run every cell of `job` and report through `events`; returns when all finished.

        Cells of one trunk group (`job.groups`) stay on one worker, one after another, so
        the later ones reuse what the earlier ones cached.
        """
        from multiprocessing.connection import wait

        queue = CellQueue(list(job.cells), job.groups)
        for _ in range(min(self.jobs, len(queue))):
            self._give(self._spawn(), job, queue.next())
        try:
            while self._workers:
                waits = [w.conn for w in self._workers] + [
                    w.process.sentinel for w in self._workers
                ]
                ready = wait(waits)
                for worker in list(self._workers):
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    dead = False
                    try:
                        while worker.conn.poll():
                            kind, cell_id, payload = worker.conn.recv()
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
                                self._give(worker, job, queue.next(after=cell_id))
                                if worker.cell is None:  # nothing to wait for: let it exit
                                    self._workers.remove(worker)
                                    self._retired.append(worker)
                                    break
                    except (EOFError, OSError):
                        dead = True
                    if worker in self._retired:
                        continue
                    if worker.process.sentinel in ready or dead:
                        self._reap(worker, job, queue, events)
        finally:
            self.close()

    def _reap(self, worker: _Worker, job: Job, queue: CellQueue, events: ExecutorEvents) -> None:
        """A worker ended: fail its cell and start a fresh worker if work is left."""
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

    def close(self) -> None:
        """Stop every worker still running (on an error or Ctrl-C in the driver)."""
        workers = self._workers + self._retired
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in workers:
            worker.process.join(timeout=5)
            worker.conn.close()
        self._workers.clear()
        self._retired.clear()
