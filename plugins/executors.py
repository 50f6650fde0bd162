"""Built-in executors: `local` (in the driver, or N worker processes) and `ray` (a cluster).

Both hand each cell's outcome back to the driver, which alone writes the results database.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from pcnbench.api import Executor, ExecutorEvents
from pcnbench.errors import PcnbenchError
from pcnbench.hookspecs import Register, hookimpl
from pcnbench.workers import CellQueue, Job, LocalPool, WorkerConfig, worker_context

__all__ = ["LocalExecutor", "RayExecutor"]


class LocalExecutor(Executor):
    """Cells one after another in the driver, or in `jobs` spawned worker processes."""

    name = "local"

    def probe(self) -> str:
        """Always available: the driver process, or N worker processes with --jobs N."""
        import os

        return f"available: in the driver, or --jobs N worker processes ({os.cpu_count()} cores)"

    def check(self, job: Job) -> None:
        """Local execution needs nothing beyond the core."""
        if job.options:
            raise PcnbenchError(
                f"executor 'local' takes no options (got {', '.join(sorted(job.options))});"
                " use executor.jobs for worker processes"
            )

    def run(self, job: Job, cell_ids: list[str], events: ExecutorEvents) -> None:
        """Run the cells in this process (jobs 1) or a pool of worker processes."""
        if job.jobs > 1 and len(cell_ids) > 1:
            import torch

            on_cuda = job.config.device.startswith("cuda")
            gpus = torch.cuda.device_count() if on_cuda else 0
            pool = LocalPool(job.config, min(job.jobs, len(cell_ids)), gpus=gpus)
            pool.run(cell_ids, events, job.groups)
            return
        assert job.in_process is not None
        for cell_id in cell_ids:
            events.started(cell_id, job.config.device)

            def progress(step: int, total: int, _cell: str = cell_id) -> None:
                events.progress(_cell, step, total)

            events.finished(cell_id, job.in_process(cell_id, progress))


def _ray_cell(config: WorkerConfig, cell_id: str, queue: Any) -> Any:
    """A Ray task: run one cell in this worker's (cached) context, posting progress."""
    import ray

    context = worker_context(config)
    node = ray.util.get_node_ip_address()
    queue.put(("started", cell_id, f"{context.device}@{node}"))
    last = [0.0]

    def progress(step: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or step == total:  # each put is a remote call
            last[0] = now
            queue.put(("progress", cell_id, (step, total)))

    return context.run(cell_id, progress)


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

    def run(self, job: Job, cell_ids: list[str], events: ExecutorEvents) -> None:
        """Submit every cell as a task; report outcomes as they complete."""
        import ray
        from ray.util.queue import Empty, Queue

        from pcnbench.runner import Outcome

        started_here = not ray.is_initialized()
        if started_here:
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
        gpus = job.gpus
        if gpus is None:  # device "auto": a GPU per cell when the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        device = job.config.device
        if device == "auto":
            device = "cuda" if gpus > 0 else "cpu"
        threads = max(1, int(job.cpus))
        config = replace(job.config, device=device, threads=threads)
        queue = Queue()
        task = ray.remote(_ray_cell).options(
            num_cpus=job.cpus, num_gpus=gpus, max_retries=job.options.get("max_retries", 0)
        )
        # With trunk sharing, the cells of a trunk group run as a chain (each reuses what the
        # previous one cached) and the groups in parallel; without it every cell at once.
        cells = CellQueue(cell_ids, job.groups)
        pending: dict[Any, str] = {}

        def submit(cell_id: str | None) -> None:
            if cell_id is not None:
                pending[task.remote(config, cell_id, queue)] = cell_id

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
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started_here:
                ray.shutdown()


@hookimpl
def register_executors(register: Register) -> None:
    """Register the local and Ray executors."""
    register(LocalExecutor())
    register(RayExecutor())
