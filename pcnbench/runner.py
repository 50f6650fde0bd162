"""Running a suite: cells one after another in the driver, each stored as it finishes."""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pcnbench
from pcnbench.cells import Cell, cell_config, expand, select
from pcnbench.errors import PcnbenchError, SuiteError
from pcnbench.lock import OutputLock
from pcnbench.manager import PluginHost
from pcnbench.metering import MeterSet, apportion_estimates, reading_columns
from pcnbench.provenance import environment
from pcnbench.store import Store
from pcnbench.suite import LoadedSuite
from pcnbench.trunk import TrunkCache, trunk_key


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
) -> Any:
    """Build the cell's model, hand a fresh Session to its method, and return the session.

    With `trunk`, the session shares the dense prefix of its training through that cache.
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
        jobs: int = 1,
    ) -> None:
        if jobs < 1:
            raise PcnbenchError(f"--jobs must be ≥ 1 (got {jobs})")
        self.loaded = loaded
        self.share = share
        self.jobs = jobs
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

    def trunk_cache(self, cell: Cell, device: str) -> TrunkCache | None:
        """The cache of the dense trunk `cell` shares (None with sharing off).

        Keyed by everything that decides the trunk's numbers: the cell's for-id configuration
        without its method, the pcnbench and torch versions, device type and determinism.
        """
        if not self.share:
            return None
        import torch

        config = cell_config(
            cell.dataset, cell.model, cell.method, cell.seed, cell.recipe, for_id=True
        )
        key = trunk_key(
            config,
            pcnbench=pcnbench.__version__,
            torch=torch.__version__,
            device=torch.device(device).type,
            deterministic=self.loaded.suite.deterministic,
        )
        return TrunkCache(self.output / "trunk", key)

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

    def _run(self, *, only: str | None, force: bool) -> RunSummary:
        device = pick_device(self.loaded, self.device_override)
        set_determinism(self.loaded.suite.deterministic, device)
        cells, todo = self.plan(only, force)
        meters = self.meters()
        if meters is not None and todo:
            # slow one-time meter setup (codecarbon's hardware probe) overlaps the first cell
            threading.Thread(target=meters.prepare, name="pcnbench-meters", daemon=True).start()
        self._meterset = meters
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
        progress = self.progress
        total = progress.add_task("suite", total=len(todo)) if progress else None
        data_key, data = None, None
        status = "done"
        try:
            if self.jobs > 1 and len(todo) > 1:
                self._run_parallel(todo, store, run_id, device, summary, progress, total)
                todo = []
            for cell in todo:
                load_error = None
                if data_key != dataset_key(cell):
                    data, data_key, load_error = load_data(self.host, cell)
                ok = self._run_one(cell, store, run_id, device, data, load_error, progress)
                (summary.done if ok else summary.failed).append(cell.id)
                if progress:
                    progress.advance(total)
        except KeyboardInterrupt:
            summary.interrupted = True
            status = "interrupted"
        finally:
            if status != "interrupted" and summary.failed:
                status = "failed"
            store.end_run(run_id, status)
            store.close()
            if meters is not None:
                meters.close()
        return summary

    def _run_parallel(
        self,
        todo: list[Cell],
        store: Store,
        run_id: int,
        device: str,
        summary: RunSummary,
        progress: Any,
        total: Any,
    ) -> None:
        """Run `todo` in `self.jobs` worker processes, storing each outcome as it arrives."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import torch

        from pcnbench.workers import WorkerConfig, init_worker, run_in_worker

        context = multiprocessing.get_context("spawn")
        gpus = None
        if device.startswith("cuda") and torch.cuda.device_count() > 1:
            gpus = context.Queue()
            for i in range(self.jobs):
                gpus.put(i % torch.cuda.device_count())
        config = WorkerConfig(
            suite_file=self.loaded.file,
            suite_text=self.loaded.text,
            output=str(self.output),
            device=device,
            metering=self._meterset is not None,
            share=self.share,
            # divide the cores so N workers do not oversubscribe them
            threads=max(1, (os.cpu_count() or 1) // self.jobs),
        )
        pool = ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=context,
            initializer=init_worker,
            initargs=(config, gpus),
        )
        pending = {}
        try:
            for cell in todo:
                store.start_cell(cell, run_id, device)
                pending[pool.submit(run_in_worker, cell.id)] = cell
            for future in as_completed(pending):
                cell = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # the worker died (killed, out of memory, ...)
                    outcome = Outcome("failed", error=f"worker failed: {type(exc).__name__}: {exc}")
                ok = self._store_outcome(cell, store, outcome)
                (summary.done if ok else summary.failed).append(cell.id)
                if progress:
                    progress.advance(total)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            for cell in pending.values():
                self._interrupted(cell, store, 0.0)
            raise
        pool.shutdown()

    def _run_one(
        self,
        cell: Cell,
        store: Store,
        run_id: int,
        device: str,
        data: Any,
        load_error: str | None,
        progress: Any,
    ) -> bool:
        store.start_cell(cell, run_id, device)
        started = time.perf_counter()
        task = progress.add_task(cell.label, total=None) if progress else None

        def on_progress(step: int, total: int) -> None:
            if progress:
                progress.update(task, completed=step, total=total)

        try:
            outcome = execute_cell(
                cell,
                self.host,
                data,
                load_error,
                device,
                meters=self._meterset,
                trunk=self.trunk_cache(cell, device),
                on_progress=on_progress,
            )
        except KeyboardInterrupt:
            self._interrupted(cell, store, time.perf_counter() - started)
            raise
        finally:
            if progress:
                progress.remove_task(task)
        return self._store_outcome(cell, store, outcome)

    def _interrupted(self, cell: Cell, store: Store, seconds: float) -> None:
        store.finish_cell(
            cell.id,
            "interrupted",
            error="interrupted by the user (Ctrl-C); the next run retries this cell",
            wall_time_s=seconds,
        )
        self.host.hook.on_cell_end(cell=cell, status="interrupted", results=[])

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
