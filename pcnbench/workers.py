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

    from pcnbench.cells import expand
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
    cells = {cell.id: cell for cell in expand(loaded)}
    _STATE.update(
        config=config, host=host, loaded=loaded, runner=runner, meters=meters, cells=cells
    )
    _STATE["data_key"], _STATE["data"] = None, None


def run_in_worker(cell_id: str) -> Any:
    """Run the cell `cell_id` of the worker's suite and return its Outcome."""
    from pcnbench.runner import Outcome, dataset_key, execute_cell, load_data

    config, host, runner = (_STATE[k] for k in ("config", "host", "runner"))
    cell = _STATE["cells"][cell_id]
    load_error = None
    if _STATE["data_key"] != dataset_key(cell):
        _STATE["data"], _STATE["data_key"], load_error = load_data(host, cell)
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
