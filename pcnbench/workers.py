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

__all__ = ["CellQueue", "Job", "LocalPool", "WorkerConfig", "WorkerContext", "worker_context"]


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
    # cell id → its dense-trunk group: cells of a group share a trunk, so they do best one
    # after another where one can reuse what the other cached (empty: sharing is off)
    groups: dict[str, str] = field(default_factory=dict)


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

    def run(self, cell_id: str, on_progress: Callable[[int, int], None] | None = None) -> Any:
        """Run the cell `cell_id` of the suite and return its Outcome."""
        return self.runner.execute(self.cells[cell_id], self.device, self.meters, on_progress)


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
    ready: bool = False  # has said anything (a worker that dies before that cannot start)


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

    def run(self, cell_ids: list[str], events: Any, groups: dict[str, str] | None = None) -> None:
        """Run every cell and report through `events`; returns when all have finished.

        `groups` (cell id → trunk group) keeps cells that share a dense trunk on one worker,
        one after another, so the later ones reuse what the earlier ones cached.
        """
        from multiprocessing.connection import wait

        from pcnbench.runner import Outcome

        queue = CellQueue(cell_ids, groups)
        for _ in range(min(self.jobs, len(queue))):
            worker = self._spawn()
            worker.cell = queue.next()
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
                            worker.ready = True
                            if kind == "fatal":
                                raise PcnbenchError(f"a worker process could not start: {payload}")
                            if kind == "started":
                                events.started(cell_id, payload)
                            elif kind == "progress":
                                events.progress(cell_id, *payload)
                            else:
                                worker.cell = None
                                events.finished(cell_id, payload)
                                worker.cell = queue.next(after=cell_id)
                                worker.conn.send(worker.cell)  # None: no work left, exit
                                if worker.cell is None:  # nothing to wait for: let it exit
                                    self._workers.remove(worker)
                                    self._retired.append(worker)
                                    break
                    except (EOFError, OSError):
                        dead = True
                    if worker in self._retired:
                        continue
                    if worker.process.sentinel in ready or dead:
                        worker.process.join(timeout=5)
                        if worker.process.is_alive():
                            continue
                        self._workers.remove(worker)
                        code = worker.process.exitcode
                        if not worker.ready:
                            raise PcnbenchError(
                                f"a worker process (pid {worker.process.pid}) ended before it"
                                f" could start (exit code {code}); its error is on stderr above"
                            )
                        if worker.cell is not None:
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
                                fresh = self._spawn()
                                fresh.cell = queue.next()
                                fresh.conn.send(fresh.cell)
        finally:
            self.close()

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
