"""The `ray` executor: each cell a Ray task on a cluster this run joins or starts."""

from __future__ import annotations

import time
from dataclasses import replace
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
    run_cell,
)

__all__ = ["RayExecutor"]


def _ray_cell(config: WorkerConfig, cell: Cell, queue: Any) -> Outcome:
    """A Ray task: run one cell in this worker's (cached) context, posting progress."""
    import ray

    device = prepare_process(config)
    queue.put(("started", cell.id, f"{device}@{ray.util.get_node_ip_address()}"))
    last = [0.0]

    def progress(step: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or step == total:  # each put is a remote call
            last[0] = now
            queue.put(("progress", cell.id, (step, total)))

    return run_cell(config, cell, progress)


class RayExecutor(Executor):
    """Cells as Ray tasks with the suite's `resources:`; joins `address` or starts Ray here.

    With trunk sharing on, the cells of one trunk group (same dataset, model, seed, recipe)
    run as a chain, each reusing what the previous one cached, and the groups in parallel;
    `--no-share` submits every cell at once.

    Options (suite `executor.options`): `num_cpus`/`num_gpus` for a local instance this run
    starts, `max_retries` for tasks whose worker died (default 0: the cell fails, the rest go
    on), `runtime_env` passed to Ray. The output directory must be reachable from every node
    (a shared file system) for trunk sharing and checkpoints to work across machines.
    """

    name = "ray"
    _known = ("num_cpus", "num_gpus", "max_retries", "runtime_env")

    def probe(self) -> str:
        """Whether Ray is importable, and its version."""
        try:
            import ray
        except ImportError:
            return "not installed: pip install 'pcnbench[ray]'"
        return f"available: Ray {ray.__version__} (--address to join a cluster)"

    def check(self, job: Job) -> None:
        """Ray must be installed, and the options known."""
        unknown = [k for k in job.options if k not in self._known]
        if unknown:
            raise PcnbenchError(
                f"executor 'ray': unknown option '{unknown[0]}' (known: {', '.join(self._known)})"
            )
        try:
            import ray  # noqa: F401
        except ImportError:
            raise PcnbenchError(
                "executor 'ray' needs Ray, which is not installed here: pip install 'pcnbench[ray]'"
            ) from None

    def _init(self, job: Job) -> None:
        import ray

        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if job.address:
            init["address"] = job.address
        else:
            for key in ("num_cpus", "num_gpus"):
                if key in job.options:
                    init[key] = job.options[key]
        if "runtime_env" in job.options:
            init["runtime_env"] = job.options["runtime_env"]
        ray.init(**init)

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Submit the cells as tasks; report outcomes as they complete."""
        import ray
        from ray.util.queue import Empty, Queue

        started_here = not ray.is_initialized()
        if started_here:
            self._init(job)
        gpus = job.gpus
        if gpus is None:  # device "auto": a GPU per cell when the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        device = job.config.device
        if device == "auto":
            device = "cuda" if gpus > 0 else "cpu"
        # --threads wins; else as many torch threads as the task reserved CPUs
        threads = job.config.threads or max(1, int(job.cpus))
        config = replace(job.config, device=device, threads=threads)
        queue = Queue()
        task = ray.remote(_ray_cell).options(
            num_cpus=job.cpus, num_gpus=gpus, max_retries=job.options.get("max_retries", 0)
        )
        # With trunk sharing, the cells of a trunk group run as a chain (each reuses what the
        # previous one cached) and the groups in parallel; without it every cell at once.
        cells = CellQueue(list(job.cells), job.groups)
        pending: dict[Any, str] = {}

        def submit(cell_id: str | None) -> None:
            if cell_id is not None:
                pending[task.remote(config, job.cells[cell_id], queue)] = cell_id

        while (first := cells.next(steal=False)) is not None:
            submit(first)
        reported: set[str] = set()

        def drain() -> None:
            while True:
                try:
                    kind, cell_id, payload = queue.get_nowait()
                except Empty:
                    return
                if kind == "started" and cell_id not in reported:
                    reported.add(cell_id)
                    events.started(cell_id, payload)
                elif kind == "progress" and cell_id in reported:
                    events.progress(cell_id, *payload)

        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
                drain()
                for ref in done:
                    cell_id = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        outcome = Outcome(
                            "failed",
                            error=f"Ray task failed ({type(exc).__name__}): {reason};"
                            " the next run retries this cell",
                        )
                    events.finished(cell_id, outcome)
                    submit(cells.next(after=cell_id, steal=False))
        except BaseException:  # Ctrl-C, or the driver stopping the run (HaltError: disk full)
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started_here:
                ray.shutdown()
