"""Running a suite: cells one after another in the driver, each stored as it finishes."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pcnbench
from pcnbench.cells import Cell, cell_config, expand, select
from pcnbench.checkpoint import CellCheckpoint
from pcnbench.errors import PcnbenchError, SuiteError
from pcnbench.lock import OutputLock
from pcnbench.manager import PluginHost
from pcnbench.metering import MeterSet, apportion_estimates, reading_columns
from pcnbench.provenance import environment
from pcnbench.store import Store
from pcnbench.suite import LoadedSuite
from pcnbench.trunk import TrunkCache, trunk_key
from pcnbench.workers import Job, WorkerConfig


@dataclass
class RunSummary:
    """What a run did: cells selected, skipped as already done, finished, failed."""

    output: Path
    selected: int = 0
    skipped: int = 0
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False


def pick_device(loaded: LoadedSuite, override: str | None = None) -> str:
    """Resolve `device: auto|cpu|cuda[:N]` against what this machine has."""
    import torch

    wanted = override or loaded.suite.device
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise loaded.source.error(
            ("device",), f"'{wanted}' requested but this machine has no usable CUDA device"
        )
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise loaded.source.error(("device",), "'mps' requested but MPS is not available")
    return wanted


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_determinism(on: bool, device: str) -> None:
    """Deterministic kernels when asked (slower); otherwise let cuDNN pick the fastest."""
    import torch

    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = device.startswith("cuda")


def run_cell(
    cell: Cell,
    host: PluginHost,
    data: Any,
    device: str,
    *,
    on_epoch_end: Callable[[Any], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    meters: MeterSet | None = None,
    trunk: TrunkCache | None = None,
    checkpoint: CellCheckpoint | None = None,
) -> Any:
    """Build the cell's model, hand a fresh Session to its method, and return the session.

    With `trunk`, the session shares the dense prefix of its training through that cache;
    with `checkpoint`, it saves its state at epoch boundaries and resumes from it.
    """
    from pcnbench.session import Session

    dataset = host.datasets.get(cell.dataset.name)
    info = dataset.info(cell.dataset.params)
    seed_everything(cell.seed)
    model = host.models.get(cell.model.name).build(cell.model.params, info)
    session = Session(
        model,
        data,
        cell.recipe,
        seed=cell.seed,
        device=device,
        on_epoch_end=on_epoch_end,
        on_progress=on_progress,
        meters=meters if meters is not None else MeterSet(),
        measure_inference=meters is not None,
        trunk=trunk,
        checkpoint=checkpoint,
    )
    host.methods.get(cell.method.name).run(session, cell.method.params)
    if not session.results:
        raise PcnbenchError(
            f"method '{cell.method.name}' (plugin '{host.methods.plugin_of(cell.method.name)}')"
            " finished without recording a result; call session.record()"
        )
    return session


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
        jobs: int | None = None,
        executor: str | None = None,
        address: str | None = None,
    ) -> None:
        if jobs is not None and jobs < 1:
            raise PcnbenchError(f"--jobs must be ≥ 1 (got {jobs})")
        self.loaded = loaded
        self.share = share
        self.jobs = jobs  # None: the suite's executor.jobs
        self.executor_name = executor  # None: the suite's executor.name
        self.address = address
        self._cells: dict[str, Cell] = {}  # the cells this run trains, by id
        self._device = "cpu"
        self._meterset: MeterSet | None = None
        self._data: tuple[Any, Any] = (None, None)  # (dataset key, loaded data) of the last cell
        self.host = host
        self.output = loaded.output_dir(output)
        self.device_override = device
        self.progress = progress
        self.argv = argv or []
        self.metering = loaded.suite.metering.enabled if metering is None else metering

    def meters(self) -> MeterSet | None:
        """The suite's meters, configured (None when metering is off)."""
        if not self.metering:
            return None
        wanted = self.loaded.suite.metering.meters
        names = self.host.meters.names() if wanted is None else wanted
        unknown = [n for n in names if n not in self.host.meters]
        if unknown:
            raise self.loaded.source.error(
                ("metering", "meters"), self.host.meters.unknown_message(unknown[0])
            )
        chosen = [self.host.meters.get(n) for n in names]
        for meter in chosen:
            meter.configure(dict(self.loaded.suite.metering.options))
        return MeterSet(chosen)

    def _key(self, cell: Cell, device: str | None, **extra: Any) -> str:
        """Hash of the cell's for-id configuration without its method, plus `extra`; with a
        `device`, also what decides the numbers: versions, device type, determinism."""
        config = cell_config(
            cell.dataset, cell.model, cell.method, cell.seed, cell.recipe, for_id=True
        )
        if device is None:
            return trunk_key(config, **extra)
        import torch

        return trunk_key(
            config,
            **extra,
            pcnbench=pcnbench.__version__,
            torch=torch.__version__,
            device=torch.device(device).type,
            deterministic=self.loaded.suite.deterministic,
        )

    def trunk_cache(self, cell: Cell, device: str) -> TrunkCache | None:
        """The cache of the dense trunk `cell` shares (None with sharing off).

        Keyed by everything that decides the trunk's numbers: the cell's for-id configuration
        without its method, the pcnbench and torch versions, device type and determinism.
        """
        if not self.share:
            return None
        return TrunkCache(self.output / "trunk", self._key(cell, device))

    def plan(self, only: str | None = None, force: bool = False) -> tuple[list[Cell], list[Cell]]:
        """(selected cells, those of them that will train) given stored statuses."""
        cells = select(expand(self.loaded), only)
        db = self.output / "results.db"
        statuses = Store(db).statuses() if db.exists() else {}
        todo = [c for c in cells if force or statuses.get(c.id) != "done"]
        return cells, todo

    def run(self, *, only: str | None = None, force: bool = False) -> RunSummary:
        """Run every selected cell that is not done yet (all of them with `force`).

        Holds the output directory's lock for the whole run: a second run on the same
        directory refuses, naming this one's pid.
        """
        with OutputLock(self.output):
            return self._run(only=only, force=force)

    def checkpoint(self, cell: Cell, device: str) -> CellCheckpoint | None:
        """Where `cell` keeps its epoch-boundary checkpoints (None when they are off)."""
        spec = self.loaded.suite.checkpoints
        if not spec.enabled:
            return None
        key = self._key(cell, device, method=cell.method.name)
        return CellCheckpoint(self._checkpoint_dir(cell), key, every_s=spec.every_s)

    def _checkpoint_dir(self, cell: Cell) -> Path:
        return self.output / "checkpoints" / cell.id

    def trunk_group(self, cell: Cell) -> str:
        """Cells with the same group train the same dense trunk (dataset, model, seed, recipe)."""
        return self._key(cell, None)

    def clear_checkpoint(self, cell: Cell) -> None:
        """Delete the checkpoints of `cell` (it finished, or --force retrains it)."""
        shutil.rmtree(self._checkpoint_dir(cell), ignore_errors=True)

    def job(self, device: str, todo: list[Cell] | tuple[Cell, ...] = ()) -> Job:
        """The run as an executor sees it: how workers rebuild it, and the driver's settings.

        Cells of `todo` that share a dense trunk are grouped (when sharing is on).
        """
        spec = self.loaded.suite.executor
        resources = self.loaded.suite.resources
        name = self.executor_name or spec.name
        jobs = self.jobs if self.jobs is not None else spec.jobs
        gpus = resources.gpus
        if gpus is None and device != "auto":
            gpus = 1.0 if device.startswith("cuda") else 0.0
        missing = [n for n, ref in self.host.in_code.items() if ref is None]
        config = WorkerConfig(
            suite_file=self.loaded.file,
            suite_text=self.loaded.text,
            output=str(self.output.resolve()),
            cwd=os.getcwd(),
            device=device,
            metering=self.metering,
            share=self.share,
            # divide the cores so N local workers do not oversubscribe them
            threads=max(1, (os.cpu_count() or 1) // jobs) if name == "local" else 0,
            plugins_in_code=tuple(
                (n, ref) for n, ref in self.host.in_code.items() if ref is not None
            ),
        )
        if missing and not (name == "local" and jobs == 1):
            raise PcnbenchError(
                f"plugin '{missing[0]}' was registered in code and cannot be rebuilt in a worker"
                " process (make it a module or a class importable by its qualified name)"
            )
        return Job(
            config=config,
            jobs=jobs,
            address=self.address if self.address is not None else spec.address,
            options=dict(spec.options),
            cpus=resources.cpus,
            gpus=gpus,
            in_process=self._in_process,
            groups={c.id: self.trunk_group(c) for c in todo} if self.share else {},
        )

    def _run(self, *, only: str | None, force: bool) -> RunSummary:
        name = self.executor_name or self.loaded.suite.executor.name
        if name not in self.host.executors:
            raise PcnbenchError(f"--executor: {self.host.executors.unknown_message(name)}")
        executor = self.host.executors.get(name)
        if name == "local":
            device = pick_device(self.loaded, self.device_override)
            set_determinism(self.loaded.suite.deterministic, device)
        else:  # resolved by each worker: the driver may be a machine without the GPUs
            device = self.device_override or self.loaded.suite.device
        cells, todo = self.plan(only, force)
        self._cells = {c.id: c for c in todo}
        job = self.job(device, todo)
        executor.check(job)
        if force:
            for cell in todo:  # --force retrains from scratch, not from a checkpoint
                self.clear_checkpoint(cell)
        meters = self.meters()
        in_process = name == "local" and job.jobs == 1
        if meters is not None and todo and in_process:
            # slow one-time meter setup (codecarbon's hardware probe) overlaps the first cell
            threading.Thread(target=meters.prepare, name="pcnbench-meters", daemon=True).start()
        self._meterset = meters if in_process else None
        self._device = device
        summary = RunSummary(self.output, selected=len(cells), skipped=len(cells) - len(todo))
        store = Store(self.output / "results.db")
        run_id = store.begin_run(
            self.loaded.name,
            self.loaded.file,
            self.loaded.sha256,
            self.loaded.text,
            self.argv,
            environment(self.loaded.file),
        )
        driver = _Driver(self, store, run_id, self._cells, summary)
        status = "done"
        try:
            if todo:
                executor.run(job, [c.id for c in todo], driver)
        except KeyboardInterrupt:
            summary.interrupted = True
            status = "interrupted"
            driver.interrupted()
        finally:
            driver.close()
            if status != "interrupted" and summary.failed:
                status = "failed"
            store.end_run(run_id, status)
            store.close()
            if meters is not None:
                meters.close()
        return summary

    def execute(
        self,
        cell: Cell,
        device: str,
        meters: MeterSet | None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Outcome:
        """Run `cell` in this process with its trunk cache and checkpoints; the dataset stays
        in memory for the next cell that uses it."""
        load_error = None
        data_key, data = self._data
        if data_key != dataset_key(cell):
            data, data_key, load_error = load_data(self.host, cell)
            self._data = (data_key, data)
        return execute_cell(
            cell,
            self.host,
            data,
            load_error,
            device,
            meters=meters,
            trunk=self.trunk_cache(cell, device),
            checkpoint=self.checkpoint(cell, device),
            on_progress=on_progress,
        )

    def _in_process(self, cell_id: str, on_progress: Callable[[int, int], None]) -> Outcome:
        """Run a cell in the driver's process (the serial `local` executor's path)."""
        return self.execute(self._cells[cell_id], self._device, self._meterset, on_progress)

    def _store_outcome(self, cell: Cell, store: Store, outcome: Outcome) -> bool:
        store.finish_cell(
            cell.id,
            outcome.status,
            results=outcome.results,
            epochs=outcome.epochs,
            phases=outcome.phases,
            error=outcome.error,
            wall_time_s=outcome.wall_time_s,
            extra=outcome.cell_columns,
        )
        self.host.hook.on_cell_end(cell=cell, status=outcome.status, results=outcome.results)
        return outcome.status == "done"


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
        ok = self.runner._store_outcome(cell, self.store, outcome)
        (self.summary.done if ok else self.summary.failed).append(cell_id)
        if ok:
            self.runner.clear_checkpoint(cell)

    def interrupted(self) -> None:
        """Ctrl-C: the cells still running are stored as interrupted (retried next run)."""
        for cell_id, (began, _) in list(self.running.items()):
            cell = self.cells[cell_id]
            self.store.finish_cell(
                cell_id,
                "interrupted",
                error="interrupted by the user (Ctrl-C); the next run retries this cell"
                " from its last checkpoint",
                wall_time_s=time.perf_counter() - began,
            )
            self.runner.host.hook.on_cell_end(cell=cell, status="interrupted", results=[])
        self.running.clear()

    def close(self) -> None:
        """Remove the progress bars of this run."""
        if self.bars:
            for _, task in self.running.values():
                self.bars.remove_task(task)
            self.bars.remove_task(self.suite_task)


def dataset_key(cell: Cell) -> tuple[Any, ...]:
    """What decides a cell's loaded data: cells with the same key share it in memory."""
    return (cell.dataset.name, repr(cell.dataset.params), cell.recipe.validation_split)


def load_data(host: PluginHost, cell: Cell) -> tuple[Any, tuple[Any, ...] | None, str | None]:
    """(data, its key, None), or (None, None, why) when the dataset cannot be loaded."""
    try:
        data = host.datasets.get(cell.dataset.name).load(cell.dataset.params)
    except PcnbenchError as exc:
        return None, None, f"dataset '{cell.dataset.name}': {exc}"
    except Exception:
        return None, None, traceback.format_exc()
    return data, dataset_key(cell), None


class _DataUnavailableError(Exception):
    """The cell's dataset could not be loaded; the message says why."""


@dataclass
class Outcome:
    """What running one cell produced, in any process: the driver stores it."""

    status: str  # done | failed
    error: str | None = None
    results: list[dict] = field(default_factory=list)
    epochs: list[Any] = field(default_factory=list)
    phases: list[Any] = field(default_factory=list)
    wall_time_s: float = 0.0
    cell_columns: dict[str, Any] = field(default_factory=dict)


def execute_cell(
    cell: Cell,
    host: PluginHost,
    data: Any,
    load_error: str | None,
    device: str,
    *,
    meters: MeterSet | None,
    trunk: TrunkCache | None,
    checkpoint: CellCheckpoint | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Run one cell and describe what happened (KeyboardInterrupt propagates)."""
    hook = host.hook
    started = time.perf_counter()
    try:
        if load_error is not None:
            raise _DataUnavailableError(load_error)
        hook.on_cell_start(cell=cell)

        def on_epoch_end(record: Any) -> None:
            hook.on_epoch_end(cell=cell, record=record)

        window = meters.start(kind="cell") if meters is not None else None
        window_began = time.perf_counter()
        session = run_cell(
            cell,
            host,
            data,
            device,
            on_epoch_end=on_epoch_end,
            on_progress=on_progress,
            meters=meters,
            trunk=trunk,
            checkpoint=checkpoint,
        )
        cell_columns: dict[str, Any] = {}
        if meters is not None:
            window_s = time.perf_counter() - window_began
            readings = meters.stop(window, window_s)
            cell_columns = {f"cell_{k}": v for k, v in reading_columns(readings).items()}
            apportion_estimates(session.results, readings, window_s)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, _DataUnavailableError) else traceback.format_exc()
        return Outcome("failed", error=message, wall_time_s=time.perf_counter() - started)
    return Outcome(
        "done",
        results=list(session.results),
        epochs=list(session.records),
        phases=list(session.phases),
        wall_time_s=time.perf_counter() - started,
        cell_columns=cell_columns,
    )


__all__ = [
    "Outcome",
    "RunSummary",
    "Runner",
    "SuiteError",
    "execute_cell",
    "pick_device",
    "run_cell",
]
