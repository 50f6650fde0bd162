"""Running cells away from the driver: what a worker needs, and the local process pool.

A worker, in any process or on any machine, rebuilds the driver's context from a
`WorkerConfig` (the suite's text, the output directory, the plugins registered in code), runs
cells by id and sends back an `Outcome` for each; only the driver writes the store. The
`local` executor's `--jobs N` pool below and the `ray` executor both build on `WorkerContext`.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pcnbench.errors import PcnbenchError

__all__ = ["Job", "LocalPool", "WorkerConfig", "WorkerContext", "worker_context"]


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to rebuild the driver's context (picklable, small)."""

    suite_file: str
    suite_text: str
    output: str  # absolute
    cwd: str  # the driver's working directory: relative dataset roots resolve against it
    device: str  # resolved by the driver ("cpu", "cuda"), or "auto" to resolve in the worker
    metering: bool
    share: bool
    threads: int  # torch CPU threads per worker (0: leave torch's default)
    plugins_in_code: tuple[tuple[str, str], ...] = ()  # (name, importable reference)


@dataclass
class Job:
    """One run's work as an executor sees it: how to rebuild context, and the driver's knobs."""

    config: WorkerConfig
    jobs: int = 1
    address: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cpus: float = 1.0  # per cell
    gpus: float | None = 0.0  # per cell; None: the executor decides (device "auto")
    # runs a cell in the driver's own process (the serial local path; None elsewhere)
    in_process: Callable[[str, Callable[[int, int], None]], Any] | None = None


class WorkerContext:
    """Plugins, suite, runner and meters of one worker process; runs cells by id."""

    def __init__(self, config: WorkerConfig) -> None:
        import torch

        from pcnbench.cells import expand
        from pcnbench.manager import load_plugins, rebuild
        from pcnbench.runner import Runner, pick_device, set_determinism
        from pcnbench.suite import load_suite

        if config.cwd and os.path.isdir(config.cwd):
            os.chdir(config.cwd)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        extra = [(name, rebuild(ref)) for name, ref in config.plugins_in_code]
        self.config = config
        self.host = load_plugins(extra)
        self.loaded = load_suite(config.suite_file, self.host, text=config.suite_text)
        self.runner = Runner(self.loaded, self.host, output=config.output, metering=config.metering)
        self.runner.share = config.share
        device = config.device
        self.device = pick_device(self.loaded, None if device == "auto" else device)
        set_determinism(self.loaded.suite.deterministic, self.device)
        self.meters = self.runner.meters()
        if self.meters is not None:
            self.meters.prepare()
        self.cells = {cell.id: cell for cell in expand(self.loaded)}
        self._data_key: Any = None
        self._data: Any = None

    def run(self, cell_id: str, on_progress: Callable[[int, int], None] | None = None) -> Any:
        """Run the cell `cell_id` of the suite and return its Outcome."""
        from pcnbench.runner import dataset_key, execute_cell, load_data

        cell = self.cells[cell_id]
        load_error = None
        if self._data_key != dataset_key(cell):
            self._data, self._data_key, load_error = load_data(self.host, cell)
        return execute_cell(
            cell,
            self.host,
            self._data,
            load_error,
            self.device,
            meters=self.meters,
            trunk=self.runner.trunk_cache(cell, self.device),
            checkpoint=self.runner.checkpoint(cell, self.device),
            on_progress=on_progress,
        )


_CONTEXTS: dict[WorkerConfig, WorkerContext] = {}


def worker_context(config: WorkerConfig) -> WorkerContext:
    """This process's context for `config`, built once (workers that are reused keep it)."""
    context = _CONTEXTS.get(config)
    if context is None:
        _CONTEXTS.clear()
        context = _CONTEXTS[config] = WorkerContext(config)
    return context


def _worker_main(config: WorkerConfig, conn: Any, gpu: int | None) -> None:
    """A pool worker: build the context, then run the cell ids the driver sends until None."""
    # Ctrl-C reaches the whole process group: the driver alone decides, and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        context = worker_context(config)
    except Exception as exc:
        message = str(exc) if isinstance(exc, PcnbenchError) else traceback.format_exc()
        conn.send(("fatal", None, message))
        return
    device = context.device if gpu is None else f"{context.device} (GPU {gpu})"
    while True:
        cell_id = conn.recv()
        if cell_id is None:
            return
        conn.send(("started", cell_id, device))

        def progress(step: int, total: int, _cell: str = cell_id) -> None:
            conn.send(("progress", _cell, (step, total)))

        conn.send(("finished", cell_id, context.run(cell_id, progress)))


@dataclass
class _Worker:
    process: Any
    conn: Any
    gpu: int | None
    cell: str | None = None


class LocalPool:
    """N spawned worker processes fed one cell at a time; a worker that dies fails its cell.

    With GPUs each worker sees one through CUDA_VISIBLE_DEVICES (round robin); on CPU the
    cores are divided between workers by the job's `threads`.
    """

    def __init__(self, config: WorkerConfig, jobs: int, gpus: int = 0) -> None:
        import multiprocessing

        self.config = config
        self.jobs = jobs
        self.gpus = gpus
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
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

    def run(self, cell_ids: list[str], events: Any) -> None:
        """Run every cell and report through `events`; returns when all have finished."""
        from multiprocessing.connection import wait

        from pcnbench.runner import Outcome

        queue = deque(cell_ids)
        for _ in range(min(self.jobs, len(queue))):
            worker = self._spawn()
            worker.cell = queue.popleft()
            worker.conn.send(worker.cell)
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
                            if kind == "fatal":
                                raise PcnbenchError(f"a worker process could not start: {payload}")
                            if kind == "started":
                                events.started(cell_id, payload)
                            elif kind == "progress":
                                events.progress(cell_id, *payload)
                            else:
                                worker.cell = None
                                events.finished(cell_id, payload)
                                if queue:
                                    worker.cell = queue.popleft()
                                    worker.conn.send(worker.cell)
                                else:
                                    worker.conn.send(None)
                    except (EOFError, OSError):
                        dead = True
                    if worker.process.sentinel in ready or dead:
                        worker.process.join(timeout=5)
                        if worker.process.is_alive():
                            continue
                        self._workers.remove(worker)
                        if worker.cell is not None:
                            code = worker.process.exitcode
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
                            if queue:
                                fresh = self._spawn()
                                fresh.cell = queue.popleft()
                                fresh.conn.send(fresh.cell)
        finally:
            self.close()

    def close(self) -> None:
        """Stop every worker still running (on an error or Ctrl-C in the driver)."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self._workers:
            worker.process.join(timeout=5)
            worker.conn.close()
        self._workers.clear()
