"""`pcnbench run --jobs N`: cells in N worker processes; only the driver writes the store.

Each worker loads the plugins and the suite once, holds a dataset in memory between the cells
that share it, and sends back an `Outcome` per cell. On CPU the cores are divided between the
workers; with GPUs each worker sees one device through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerConfig", "init_worker", "run_in_worker"]


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to rebuild the driver's context."""

    suite_file: str
    suite_text: str
    output: str
    device: str
    metering: bool
    share: bool
    threads: int


_STATE: dict[str, Any] = {}


def init_worker(config: WorkerConfig, gpus: Any = None) -> None:
    """Per-process setup: pin a GPU or divide CPU threads, load plugins and the suite once."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    import torch

    from pcnbench.manager import load_plugins
    from pcnbench.runner import Runner, set_determinism
    from pcnbench.suite import load_suite

    torch.set_num_threads(config.threads)
    host = load_plugins()
    loaded = load_suite(config.suite_file, host, text=config.suite_text)
    runner = Runner(loaded, host, output=config.output, metering=config.metering)
    runner.share = config.share
    set_determinism(loaded.suite.deterministic, config.device)
    meters = runner.meters()
    if meters is not None:
        meters.prepare()
    _STATE.update(config=config, host=host, loaded=loaded, runner=runner, meters=meters)
    _STATE["data_key"], _STATE["data"] = None, None


def run_in_worker(cell_id: str) -> Any:
    """Run the cell `cell_id` of the worker's suite and return its Outcome."""
    from pcnbench.cells import expand
    from pcnbench.errors import PcnbenchError
    from pcnbench.runner import Outcome, execute_cell

    config, host, loaded, runner = (_STATE[k] for k in ("config", "host", "loaded", "runner"))
    cell = next(c for c in expand(loaded) if c.id == cell_id)
    key = (cell.dataset.name, repr(cell.dataset.params), cell.recipe.validation_split)
    load_error = None
    if key != _STATE["data_key"]:
        _STATE["data_key"], _STATE["data"] = None, None
        try:
            _STATE["data"] = host.datasets.get(cell.dataset.name).load(cell.dataset.params)
            _STATE["data_key"] = key
        except PcnbenchError as exc:
            load_error = f"dataset '{cell.dataset.name}': {exc}"
        except Exception as exc:
            load_error = f"dataset '{cell.dataset.name}': {type(exc).__name__}: {exc}"
    device = config.device
    outcome: Outcome = execute_cell(
        cell,
        host,
        _STATE["data"],
        load_error,
        device,
        meters=_STATE["meters"],
        trunk=runner.trunk_cache(cell, device),
    )
    return outcome
