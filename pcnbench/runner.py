"""Running a suite: plan the cells, hand them to an executor, store each outcome as it ends.

The driver (this module) is the only writer of the results database. It never runs a cell
itself: the executor decides where each runs, and every place runs it the same way
(`pcnbench.execution.run_cell`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcnbench import execution
from pcnbench.cells import Cell, select
from pcnbench.errors import HaltError, PcnbenchError
from pcnbench.jobs import Job, Outcome, WorkerConfig, cpu_processes, usable_cores
from pcnbench.lock import OutputLock
from pcnbench.manager import PluginHost
from pcnbench.output import check_output
from pcnbench.prepare import prepare_datasets
from pcnbench.provenance import environment
from pcnbench.store import Store
from pcnbench.suite import LoadedSuite

__all__ = ["MachineLoad", "RunSummary", "Runner", "machine_load"]


@dataclass(frozen=True)
class MachineLoad:
    """How busy the machine is as a run starts, and whether the run oversubscribes it."""

    load_1m: float | None  # the 1-minute load average (None where the OS has none)
    running: int | None  # other tasks running right now (None where the OS does not say)
    cores: int  # the machine's cores (the load counts the whole machine)
    usable_cores: int  # the cores this process may run on
    threads: int  # torch threads per cell process
    processes: int  # cell processes at once (the local executor's --jobs)

    def reasons(self) -> list[str]:
        """Why the run oversubscribes the machine (empty: it does not)."""
        ours = self.threads * self.processes
        why = []
        if self.load_1m is not None and self.load_1m > self.cores:
            why.append(f"load average {self.load_1m:.1f} on {self.cores} cores")
        if self.running is not None and self.running + ours > self.cores:
            why.append(
                f"{self.running} other task{'s' if self.running != 1 else ''} running beside "
                f"{ours} torch thread{'s' if ours != 1 else ''} on {self.cores} cores"
            )
        if ours > self.usable_cores:
            why.append(
                f"{self.processes} process{'es' if self.processes > 1 else ''} × {self.threads}"
                f" torch threads on {self.usable_cores} usable cores"
            )
        return why

    @property
    def oversubscribed(self) -> bool:
        """More runnable work than cores: the load average above the cores, the tasks running
        now plus this run's threads above them, or more threads than this process may use."""
        return bool(self.reasons())

    def warning(self) -> str | None:
        """One line saying the machine is oversubscribed and what that does (None if not)."""
        why = self.reasons()
        if not why:
            return None
        return (
            f"warning: the machine is oversubscribed ({'; '.join(why)}): training times and "
            "absolute latencies are unreliable; latency ratios are timed against dense in the "
            "same window and flagged when noisy (--threads 1 may help)"
        )

    def as_environment(self) -> dict[str, Any]:
        """The figures for the run's stored environment."""
        return {
            "load_avg_1m": self.load_1m,
            "running_tasks": self.running,
            "usable_cores": self.usable_cores,
            "cell_threads": self.threads,
            "cell_processes": self.processes,
            "oversubscribed": self.oversubscribed,
        }


def _task_files(pid: int, name: str) -> list[str]:
    """The text of /proc/PID/task/*/NAME for each thread of `pid` still there to read."""
    texts = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return texts
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/{name}", encoding="ascii") as f:
                texts.append(f.read())
        except OSError:
            continue
    return texts


def own_running_tasks() -> int:
    """Tasks (threads) of this process's descendants running now, read from Linux's /proc.

    A run's own helpers, such as the local executor's worker server importing torch while
    the suite is validated, are no load beside the run. 0 where /proc has no such record.
    """
    found: list[int] = []
    todo = [os.getpid()]
    while todo:
        children = [int(c) for text in _task_files(todo.pop(), "children") for c in text.split()]
        found.extend(children)
        todo.extend(children)
    # a task's state follows its command name, which is in parentheses
    states = [
        text.rsplit(")", 1)[-1].split()[:1] for pid in found for text in _task_files(pid, "stat")
    ]
    return sum(state == ["R"] for state in states)


def _running_now(samples: int = 9, interval_s: float = 0.01) -> int | None:
    """Tasks running on the machine besides the caller and its own descendants: the median of
    a few reads of Linux's procs_running (the load average trails by a minute); None where
    there is none."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                line = next((ln for ln in stat if ln.startswith("procs_running")), None)
        except OSError:
            return None
        if line is None:
            return None
        # less the caller, reading it, and its own helpers
        counts.append(max(0, int(line.split()[1]) - 1 - own_running_tasks()))
        if i + 1 < samples:
            time.sleep(interval_s)
    return sorted(counts)[len(counts) // 2]


def machine_load(threads: int, processes: int = 1) -> MachineLoad:
    """The machine's load now, for a run of `processes` cell processes × `threads` threads."""
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    cores = os.cpu_count() or 1
    return MachineLoad(load, _running_now(), cores, usable_cores(), threads, processes)


@dataclass
class RunSummary:
    """What a run did: cells selected, skipped as already done, finished, failed."""

    output: Path
    selected: list[str] = field(default_factory=list)  # ids of the cells --only selected
    skipped: int = 0
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False


class Runner:
    """Drives a loaded suite through the cells that still need to run."""

    def __init__(
        self,
        loaded: LoadedSuite,
        host: PluginHost,
        *,
        output: str | Path | None = None,
        device: str | None = None,
        progress: Any = None,
        argv: list[str] | None = None,
        metering: bool | None = None,
        share: bool = True,
        jobs: int | str | None = None,
        executor: str | None = None,
        address: str | None = None,
        threads: int | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if jobs is not None and jobs != "auto" and (not isinstance(jobs, int) or jobs < 1):
            raise PcnbenchError(f"--jobs must be ≥ 1 or 'auto' (got {jobs})")
        if threads is not None and threads < 1:
            raise PcnbenchError(f"--threads must be ≥ 1 (got {threads})")
        self.loaded = loaded
        self.host = host
        self.output = loaded.output_dir(output)
        self.device = device or loaded.suite.device
        self.progress = progress
        self.argv = argv or []
        self.metering = loaded.suite.metering.enabled if metering is None else metering
        self.share = share
        self.jobs = jobs  # None: the suite's executor.jobs
        self.executor_name = executor or loaded.suite.executor.name
        self.address = address
        self.threads = threads  # torch threads per cell process; None: threads_for's default
        self.warn = warn  # says a warning about the run to the user (None: keep quiet)

    def plan(self, only: str | None = None, force: bool = False) -> tuple[list[Cell], list[Cell]]:
        """(selected cells, those of them that will train) given stored statuses."""
        cells = select(self.loaded.cells, only)
        db = self.output / "results.db"
        statuses: dict[str, str] = {}
        if db.exists():  # read-only: planning never creates or migrates a database
            store = Store(db, readonly=True)
            try:
                statuses = store.statuses()
            finally:
                store.close()
        todo = [c for c in cells if force or statuses.get(c.id) != "done"]
        return cells, todo

    def _meter_names(self) -> tuple[str, ...] | None:
        """The suite's meters (all registered by default); None when metering is off."""
        if not self.metering:
            return None
        wanted = self.loaded.suite.metering.meters
        names = self.host.meters.names() if wanted is None else wanted
        unknown = [n for n in names if n not in self.host.meters]
        if unknown:
            raise self.loaded.source.error(
                ("metering", "meters"), self.host.meters.unknown_message(unknown[0])
            )
        return tuple(names)

    def config(self) -> WorkerConfig:
        """What any process needs to run this run's cells."""
        suite = self.loaded.suite
        return WorkerConfig(
            output=str(self.output.resolve()),
            cwd=os.getcwd(),
            device=self.device,
            deterministic=suite.deterministic,
            meters=self._meter_names(),
            meter_options=tuple(sorted(suite.metering.options.items())),
            share=self.share,
            checkpoint_every_s=suite.checkpoints.every_s if suite.checkpoints.enabled else None,
            threads=self.threads or 0,
            plugins_in_code=tuple(self.host.in_code.items()),
        )

    def machine_load(self, job: Job) -> MachineLoad:
        """The machine's load as `job` starts, against the threads its cells will use here."""
        local = self.executor_name == "local"
        processes = cpu_processes(job.jobs, len(job.cells), job.lanes()) if local else 1
        return machine_load(job.config.threads_for(processes), processes)

    def job(self, todo: list[Cell]) -> Job:
        """The run as an executor sees it: the cells, the process settings, the suite's knobs.

        Cells of `todo` that share a dense trunk are grouped (when sharing is on).
        """
        spec = self.loaded.suite.executor
        gpus = self.loaded.suite.resources.gpus
        if gpus is None and self.device != "auto":
            gpus = 1.0 if self.device.startswith("cuda") else 0.0
        return Job(
            config=self.config(),
            cells={c.id: c for c in todo},
            jobs=self.jobs if self.jobs is not None else spec.jobs,
            address=self.address if self.address is not None else spec.address,
            options=dict(spec.options),
            cpus=self.loaded.suite.resources.cpus,
            gpus=gpus,
            groups={c.id: execution.trunk_group(c) for c in todo} if self.share else {},
        )

    def run(
        self, *, only: str | None = None, force: bool = False, mix_suites: bool = False
    ) -> RunSummary:
        """Run every selected cell that is not done yet (all of them with `force`).

        Refuses, before writing anything, an output that is a file or a folder that is not this
        suite's (`check_output`; `mix_suites` lets another suite's folder in). Holds the output
        directory's lock for the whole run: a second run on the same directory refuses, naming
        this one's pid.
        """
        check_output(self.output, self.loaded.name, mix_suites=mix_suites)
        if self.executor_name not in self.host.executors:
            raise PcnbenchError(
                f"--executor: {self.host.executors.unknown_message(self.executor_name)}"
            )
        executor = self.host.executors.get(self.executor_name)
        with OutputLock(self.output):
            cells, todo = self.plan(only, force)
            job = self.job(todo)
            executor.check(job)
            prepare_datasets(self.loaded, self.host, todo)  # once each, before any cell trains
            load = self.machine_load(job)
            if load.warning() and self.warn is not None:  # said once, as the run starts
                self.warn(load.warning())
            if force:
                for cell in todo:  # --force retrains from scratch, not from a checkpoint
                    execution.clear_checkpoint(self.output, cell.id)
            summary = RunSummary(
                self.output, selected=[c.id for c in cells], skipped=len(cells) - len(todo)
            )
            # a context this process builds (the executor may run cells here) uses our plugins
            execution.provide_host(job.config, self.host)
            store = Store(self.output / "results.db")
            env = environment(self.loaded.file)
            env.update(load.as_environment())
            run_id = store.begin_run(
                self.loaded.name,
                self.loaded.file,
                self.loaded.sha256,
                self.loaded.text,
                self.argv,
                env,
            )
            driver = _Driver(self, store, run_id, job.cells, summary)
            status = "done"
            try:
                if todo:
                    executor.run(job, driver)
            except KeyboardInterrupt:
                summary.interrupted = True
                status = "interrupted"
                driver.interrupted()
            except HaltError as exc:
                # the machine cannot go on (disk full): cells still running are retried next run
                status = "interrupted"
                driver.interrupted(f"the run stopped: {exc}")
                raise
            except Exception:
                status = "failed"
                raise
            finally:
                driver.close()
                if status != "interrupted" and summary.failed:
                    status = "failed"
                elif status == "done" and summary.interrupted:  # a cell's job was cancelled
                    status = "interrupted"
                store.end_run(run_id, status)
                store.close()
                execution.release(job.config)
            return summary


class _Driver:
    """The driver's side of an executor: stores outcomes, moves progress bars, keeps tally."""

    def __init__(
        self, runner: Runner, store: Store, run_id: int, cells: dict[str, Cell], summary: RunSummary
    ) -> None:
        self.runner, self.store, self.run_id = runner, store, run_id
        self.cells = cells
        self.summary = summary
        self.bars = runner.progress
        self.suite_task = self.bars.add_task("suite", total=len(cells)) if self.bars else None
        self.running: dict[str, tuple[float, Any]] = {}  # cell id → (start time, progress task)

    def started(self, cell_id: str, device: str) -> None:
        """Mark the cell running in the store and give it a progress bar."""
        cell = self.cells[cell_id]
        self.store.start_cell(cell, self.run_id, device)
        task = self.bars.add_task(cell.label, total=None) if self.bars else None
        self.running[cell_id] = (time.perf_counter(), task)

    def progress(self, cell_id: str, step: int, total: int) -> None:
        """Move the cell's progress bar."""
        if self.bars and cell_id in self.running:
            self.bars.update(self.running[cell_id][1], completed=step, total=total)

    def finished(self, cell_id: str, outcome: Outcome) -> None:
        """Store the outcome; a cell that is done drops its checkpoints."""
        if cell_id not in self.running:  # e.g. its worker died before it could say so
            self.started(cell_id, "unknown (the worker ended before reporting)")
        _, task = self.running.pop(cell_id)
        if self.bars:
            self.bars.remove_task(task)
            self.bars.advance(self.suite_task)
        cell = self.cells[cell_id]
        if outcome.status == "halted":  # not the cell's fault: retried, and the run stops
            self.store.finish_cell(
                cell.id,
                "interrupted",
                error=f"{outcome.error} (the run stopped here; the next run retries this cell)",
                wall_time_s=outcome.wall_time_s,
            )
            self.runner.host.hook.on_cell_end(
                cell=cell, status="interrupted", results=[], error=outcome.error
            )
            raise HaltError(outcome.error or "the machine could not go on")
        if outcome.status == "interrupted":  # not the cell's fault (its cluster job was
            # cancelled, preempted, out of time): the next run resumes it; the run goes on
            self.store.finish_cell(
                cell.id, "interrupted", error=outcome.error, wall_time_s=outcome.wall_time_s
            )
            self.runner.host.hook.on_cell_end(
                cell=cell, status="interrupted", results=[], error=outcome.error
            )
            self.summary.interrupted = True
            return
        extra = dict(outcome.cell_columns)
        if outcome.warnings:
            extra["warnings"] = outcome.warnings
            for message in outcome.warnings:  # above any progress bars (rich redirects stderr)
                if self.runner.warn is not None:
                    self.runner.warn(f"warning: {cell.label}: {message}")
        self.store.finish_cell(
            cell.id,
            outcome.status,
            results=outcome.results,
            epochs=outcome.epochs,
            phases=outcome.phases,
            error=outcome.error,
            wall_time_s=outcome.wall_time_s,
            extra=extra,
        )
        self.runner.host.hook.on_cell_end(
            cell=cell, status=outcome.status, results=outcome.results, error=outcome.error
        )
        ok = outcome.status == "done"
        (self.summary.done if ok else self.summary.failed).append(cell_id)
        if ok:
            execution.clear_checkpoint(self.runner.output, cell_id)

    def interrupted(self, reason: str = "interrupted by the user (Ctrl-C)") -> None:
        """The run stops early: the cells still running are stored as interrupted (retried).

        Best effort when the run stops because the disk is full: a cell that cannot be
        marked stays "running" in the store, which the next run also retries.
        """
        for cell_id, (began, _) in list(self.running.items()):
            cell = self.cells[cell_id]
            try:
                self.store.finish_cell(
                    cell_id,
                    "interrupted",
                    error=f"{reason}; the next run retries this cell from its last checkpoint",
                    wall_time_s=time.perf_counter() - began,
                )
            except HaltError:
                continue
            self.runner.host.hook.on_cell_end(
                cell=cell, status="interrupted", results=[], error=reason
            )
        self.running.clear()

    def close(self) -> None:
        """Remove the progress bars of this run."""
        if self.bars:
            for _, task in self.running.values():
                self.bars.remove_task(task)
            self.bars.remove_task(self.suite_task)
