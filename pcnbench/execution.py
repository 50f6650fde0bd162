"""Running a cell in this process: the one path the driver and every worker take.

A `CellContext` holds what a process needs to run cells of a run (plugins, the resolved
device, meters, the dataset last loaded) and is built once per process from a picklable
`WorkerConfig`; `run_cell` runs one cell through it and describes what happened in an
`Outcome`, which only the driver stores. Where a cell runs is for the executor to decide.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pcnbench
from pcnbench.cells import Cell, cell_config
from pcnbench.checkpoint import CellCheckpoint
from pcnbench.errors import HaltError, PcnbenchError
from pcnbench.jobs import Outcome, WorkerConfig
from pcnbench.manager import PluginHost, load_plugins, rebuild
from pcnbench.metering import MeterSet, apportion_estimates, reading_columns
from pcnbench.records import EpochRecord
from pcnbench.session import Session
from pcnbench.trunk import TrunkCache, trunk_key

__all__ = [
    "CellContext",
    "checkpoint_dir",
    "context",
    "prepare_process",
    "provide_host",
    "release",
    "resolve_device",
    "run_cell",
    "run_method",
    "trunk_group",
]


def resolve_device(wanted: str) -> str:
    """Resolve `auto|cpu|cuda[:N]|mps` against what this machine has."""
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise PcnbenchError(
            f"device '{wanted}' was asked for (suite key `device` or --device) but this machine"
            " has no usable CUDA device; use `device: auto` to fall back to the CPU"
        )
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise PcnbenchError("device 'mps' was asked for but MPS is not available here")
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


def trunk_group(cell: Cell) -> str:
    """Cells with the same group train the same dense trunk (dataset, model, seed, recipe)."""
    return trunk_key(_for_id(cell))


def checkpoint_dir(output: str | Path, cell_id: str) -> Path:
    """Where the cell `cell_id` of the run writing to `output` keeps its checkpoints."""
    return Path(output) / "checkpoints" / cell_id


def clear_checkpoint(output: str | Path, cell_id: str) -> None:
    """Delete a cell's checkpoints (it finished, or --force retrains it)."""
    shutil.rmtree(checkpoint_dir(output, cell_id), ignore_errors=True)


def _for_id(cell: Cell) -> dict[str, Any]:
    return cell_config(cell.dataset, cell.model, cell.method, cell.seed, cell.recipe, for_id=True)


def dataset_key(cell: Cell) -> tuple[Any, ...]:
    """What decides a cell's loaded data: cells with the same key share it in memory."""
    return (cell.dataset.name, repr(cell.dataset.params), cell.recipe.validation_split)


class _DataUnavailableError(Exception):
    """The cell's dataset could not be loaded; the message says why."""


def _rebuilt(config: WorkerConfig) -> list[tuple[str, object]]:
    """The driver's plugins registered in code, rebuilt in this process."""
    lost = [name for name, ref in config.plugins_in_code if ref is None]
    if lost:
        raise PcnbenchError(
            f"plugin '{lost[0]}' was registered in code and cannot be rebuilt in another"
            " process (make it a module or a class importable by its qualified name)"
        )
    return [(name, rebuild(ref)) for name, ref in config.plugins_in_code if ref is not None]


def run_method(
    cell: Cell,
    host: PluginHost,
    data: Any,
    device: str,
    *,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    meters: MeterSet | None = None,
    trunk: TrunkCache | None = None,
    checkpoint: CellCheckpoint | None = None,
) -> Session:
    """Build the cell's model, hand a fresh Session to its method, and return the session.

    Without `meters` nothing is metered and inference is not measured; with `trunk`, the
    session shares the dense prefix of its training; with `checkpoint`, it saves its state
    at epoch boundaries and resumes from it.
    """
    info = host.datasets.get(cell.dataset.name).info(cell.dataset.params)
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


class CellContext:
    """Plugins, device, meters and the dataset last loaded: what runs cells in one process."""

    def __init__(self, config: WorkerConfig, host: PluginHost | None = None) -> None:
        import torch

        if config.cwd and os.path.isdir(config.cwd) and os.getcwd() != config.cwd:
            os.chdir(config.cwd)
        # --threads, else OMP_NUM_THREADS, else the cores this process may use (a local pool
        # passes each worker its share in `threads`)
        torch.set_num_threads(config.threads_for())
        if host is None:
            host = load_plugins(_rebuilt(config))
        self.config = config
        self.host = host
        self.output = Path(config.output)
        self.device = resolve_device(config.device)
        set_determinism(config.deterministic, self.device)
        self.meters = self._meters()
        if self.meters is not None:
            # slow one-time meter setup (codecarbon's hardware probe) overlaps the first cell
            threading.Thread(
                target=self.meters.prepare, name="pcnbench-meters", daemon=True
            ).start()
        self._data: tuple[Any, Any] = (None, None)  # (dataset key, loaded data)

    def _meters(self) -> MeterSet | None:
        names = self.config.meters
        if names is None:
            return None
        chosen = [self.host.meters.get(n) for n in names if n in self.host.meters]
        for meter in chosen:
            meter.configure(dict(self.config.meter_options))
        return MeterSet(chosen)

    def _key(self, cell: Cell, **extra: Any) -> str:
        """Hash of what decides a cell's trunk numbers: its configuration less the method,
        the pcnbench and torch versions, device type and determinism (plus `extra`)."""
        import torch

        return trunk_key(
            _for_id(cell),
            **extra,
            pcnbench=pcnbench.__version__,
            torch=torch.__version__,
            device=torch.device(self.device).type,
            deterministic=self.config.deterministic,
        )

    def trunk_cache(self, cell: Cell) -> TrunkCache | None:
        """The cache of the dense trunk `cell` shares (None with sharing off)."""
        if not self.config.share:
            return None
        return TrunkCache(self.output / "trunk", self._key(cell))

    def checkpoint(self, cell: Cell) -> CellCheckpoint | None:
        """Where `cell` keeps its epoch-boundary checkpoints (None when they are off)."""
        every_s = self.config.checkpoint_every_s
        if every_s is None:
            return None
        key = self._key(cell, method=cell.method.name)
        return CellCheckpoint(checkpoint_dir(self.output, cell.id), key, every_s=every_s)

    def _load(self, cell: Cell) -> tuple[Any, str | None]:
        """The cell's data (kept in memory for the next cell that uses it), or why not."""
        key, data = self._data
        if key == dataset_key(cell):
            return data, None
        self._data = (None, None)  # free the previous dataset before loading the next
        try:
            data = self.host.datasets.get(cell.dataset.name).load(cell.dataset.params)
        except PcnbenchError as exc:
            return None, f"dataset '{cell.dataset.name}': {exc}"
        except Exception:
            return None, traceback.format_exc()
        self._data = (dataset_key(cell), data)
        return data, None

    def execute(self, cell: Cell, on_progress: Callable[[int, int], None] | None = None) -> Outcome:
        """Run one cell and describe what happened (KeyboardInterrupt propagates)."""
        hook, meters = self.host.hook, self.meters
        started = time.perf_counter()
        try:
            data, load_error = self._load(cell)
            if load_error is not None:
                raise _DataUnavailableError(load_error)
            hook.on_cell_start(cell=cell)
            window = meters.start(kind="cell") if meters is not None else None
            window_began = time.perf_counter()
            # a method's warnings reach the user once each, as lines naming the cell (the
            # driver prints them), not as Python's warning with a source line per call
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session = run_method(
                    cell,
                    self.host,
                    data,
                    self.device,
                    on_epoch_end=lambda record: hook.on_epoch_end(cell=cell, record=record),
                    on_progress=on_progress,
                    meters=meters,
                    trunk=self.trunk_cache(cell),
                    checkpoint=self.checkpoint(cell),
                )
            cell_columns: dict[str, Any] = {}
            if meters is not None:
                window_s = time.perf_counter() - window_began
                readings = meters.stop(window, window_s)
                cell_columns = {f"cell_{k}": v for k, v in reading_columns(readings).items()}
                apportion_estimates(session.results, readings, window_s)
        except KeyboardInterrupt:
            raise
        except HaltError as exc:
            # the machine, not the cell: the driver stores it as interrupted and stops the run
            return Outcome("halted", error=str(exc), wall_time_s=time.perf_counter() - started)
        except Exception as exc:
            # pcnbench's own errors (a diverged training, a model it cannot record) say what
            # went wrong in words; anything else is a bug somewhere and keeps its traceback
            plain = isinstance(exc, (_DataUnavailableError, PcnbenchError))
            message = str(exc) if plain else traceback.format_exc()
            return Outcome("failed", error=message, wall_time_s=time.perf_counter() - started)
        return Outcome(
            "done",
            results=list(session.results),
            epochs=list(session.records),
            phases=list(session.phases),
            wall_time_s=time.perf_counter() - started,
            cell_columns=cell_columns,
            warnings=list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught)),
        )

    def close(self) -> None:
        """Release the meters' resources."""
        if self.meters is not None:
            self.meters.close()


_CONTEXTS: dict[str, CellContext] = {}
_HOSTS: dict[str, PluginHost] = {}


def provide_host(config: WorkerConfig, host: PluginHost) -> None:
    """Let a context for `config` built in this process use `host` instead of loading plugins
    (the driver has them loaded already, including plugins registered in code)."""
    _HOSTS[repr(config)] = host


def context(config: WorkerConfig) -> CellContext:
    """This process's context for `config`, built on first use and kept for the next cells."""
    key = repr(config)
    found = _CONTEXTS.get(key)
    if found is None:
        for other in _CONTEXTS.values():  # a process serves one run at a time
            other.close()
        _CONTEXTS.clear()
        found = _CONTEXTS[key] = CellContext(config, _HOSTS.get(key))
    return found


def release(config: WorkerConfig) -> None:
    """Drop this process's context for `config` (the run ended) and close its meters."""
    key = repr(config)
    _HOSTS.pop(key, None)
    found = _CONTEXTS.pop(key, None)
    if found is not None:
        found.close()


def prepare_process(config: WorkerConfig) -> str:
    """Build this process's context for `config` now and return the device cells run on."""
    return context(config).device


def run_cell(
    config: WorkerConfig, cell: Cell, on_progress: Callable[[int, int], None] | None = None
) -> Outcome:
    """Run `cell` in this process through its context for `config` (see CellContext)."""
    return context(config).execute(cell, on_progress)
