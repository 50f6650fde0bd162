"""Several cells per GPU in the local pool: slot arithmetic, slot assignment (pure, on CPU),
the pool's use of it with stand-in workers, and stopping the workers when the driver raises.

Imports stay light: the spawned stand-in workers import this module.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections import Counter
from types import SimpleNamespace

import pytest

import pcnbench_plugins.executors.local as local
from pcnbench.api import HaltError, Job, Outcome, PcnbenchError, WorkerConfig
from pcnbench_plugins.executors.local import LocalPool, assign_gpu, cells_per_gpu, pool_size


@pytest.mark.parametrize(
    ("gpus", "per_gpu"),
    [(None, 1), (0, 1), (1, 1), (1.0, 1), (0.5, 2), (0.25, 4), (1 / 3, 3), (0.33, 3), (0.3, 3),
     (0.4, 2), (0.1, 10), (0.75, 1)],
)  # fmt: skip
def test_cells_per_gpu_is_how_many_of_the_fraction_fit_in_one(gpus, per_gpu):
    assert cells_per_gpu(gpus) == per_gpu


def test_pool_size_fills_the_gpu_slots_unless_jobs_caps_it():
    # gpus: 0.25 on 2 GPUs: 8 slots; --jobs not given fills them, an explicit --jobs caps
    assert pool_size(None, cells=100, devices=2, per_gpu=4) == 8
    assert pool_size(3, cells=100, devices=2, per_gpu=4) == 3
    assert pool_size(20, cells=100, devices=2, per_gpu=4) == 8
    assert pool_size(None, cells=5, devices=2, per_gpu=4) == 5  # never more than the cells
    assert pool_size(1, cells=100, devices=2, per_gpu=4) == 1  # --jobs 1: one at a time
    # gpus: 1: a worker per GPU at most
    assert pool_size(None, cells=100, devices=2, per_gpu=1) == 2
    assert pool_size(4, cells=100, devices=2, per_gpu=1) == 2
    assert pool_size(None, cells=100, devices=1, per_gpu=1) == 1  # the driver alone
    # CPU: --jobs as given, else the driver alone
    assert pool_size(None, cells=100, devices=0, per_gpu=4) == 1
    assert pool_size(4, cells=100, devices=0) == 4
    assert pool_size(4, cells=2, devices=0) == 2
    assert pool_size(4, cells=0, devices=0) == 1


def test_assign_gpu_fills_evenly_and_never_over_packs():
    busy: list[int | None] = []
    for _ in range(6):
        busy.append(assign_gpu(busy, devices=3, per_gpu=2))
    assert busy == [0, 1, 2, 0, 1, 2]  # round robin while filling
    assert assign_gpu(busy, devices=3, per_gpu=2) is None  # all 6 slots taken
    assert assign_gpu([], devices=0, per_gpu=4) is None  # CPU: no GPU to pin
    assert assign_gpu([0], devices=1, per_gpu=1) is None
    assert assign_gpu([1, 1, 0], devices=2, per_gpu=2) == 0  # the least loaded
    assert assign_gpu([1], devices=2, per_gpu=2) == 0


def test_a_replacement_for_a_dead_worker_takes_the_slot_it_freed():
    for devices, per_gpu in itertools.product([1, 2, 3], [1, 2, 4]):
        busy: list[int | None] = []
        for _ in range(devices * per_gpu):
            busy.append(assign_gpu(busy, devices, per_gpu))
        for dead in range(len(busy)):  # any worker of the full pool dies
            alive = busy[:dead] + busy[dead + 1 :]
            assert assign_gpu(alive, devices, per_gpu) == busy[dead]


def test_random_deaths_and_replacements_never_over_pack_a_gpu():
    rng = random.Random(0)
    for devices, per_gpu in itertools.product([1, 2, 4], [1, 3, 4]):
        workers: list[int | None] = []
        for _ in range(300):
            if workers and rng.random() < 0.5:
                freed = workers.pop(rng.randrange(len(workers)))  # one dies (or retires)
                others_full = all(workers.count(g) == per_gpu for g in range(devices) if g != freed)
                gpu = assign_gpu(workers, devices, per_gpu)
                if others_full:
                    assert gpu == freed
            else:
                gpu = assign_gpu(workers, devices, per_gpu)
                if len(workers) == devices * per_gpu:
                    assert gpu is None
                    continue
            assert gpu is not None
            workers.append(gpu)
            load = Counter(workers)
            assert max(load.values()) <= per_gpu and set(load) <= set(range(devices))


# ---- the pool with stand-in workers (no torch, no training) --------------------------------


def fake_worker(config, conn, gpu) -> None:
    """Stands in for `_worker_main`: says which CUDA_VISIBLE_DEVICES it got, per cell."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    device = f"{os.environ.get('CUDA_VISIBLE_DEVICES')}/{os.getpid()}"
    conn.send(("ready", None, device))
    while (cell := conn.recv()) is not None:
        conn.send(("started", cell.id, device))
        if cell.id == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if cell.id == "flood":  # progress until the driver stops it: the pipe fills up
            for step in itertools.count():
                conn.send(("progress", cell.id, (step, 0)))
        time.sleep(0.15)  # long enough for the workers' cells to overlap
        conn.send(("finished", cell.id, Outcome("done")))


def fake_job(cell_ids: list[str]) -> Job:
    config = WorkerConfig(output="/nonexistent", cwd=os.getcwd(), device="cuda")
    return Job(config=config, cells={c: SimpleNamespace(id=c) for c in cell_ids}, jobs=4)


class Recorder:
    """Records events; checks at each that no GPU holds more live workers than its slots."""

    def __init__(self, pool: LocalPool) -> None:
        self.pool = pool
        self.log: list[tuple[str, str, object]] = []
        self.most = 0

    def _check(self) -> None:
        load = Counter(w.gpu for w in self.pool._workers if w.gpu is not None)
        assert max(load.values(), default=0) <= self.pool.per_gpu
        self.most = max(self.most, len(self.pool._workers))

    def started(self, cell_id, device):
        self._check()
        self.log.append(("started", cell_id, device))

    def progress(self, cell_id, step, total):
        self.log.append(("progress", cell_id, (step, total)))

    def finished(self, cell_id, outcome):
        self._check()
        self.log.append(("finished", cell_id, outcome))


def test_the_pool_packs_workers_onto_gpus_and_a_replacement_reuses_the_dead_ones_slot(
    monkeypatch,
):
    monkeypatch.setattr(local, "_worker_main", fake_worker)
    cells = ["a", "b", "die", "c", "d", "e", "f", "g"]
    # 2 GPUs, the driver's CUDA_VISIBLE_DEVICES=3,5: 2 slots each, 4 workers
    pool = LocalPool(fake_job(cells).config, 9, gpus=2, per_gpu=2, gpu_ids=["3", "5"])
    assert pool.jobs == 4  # capped by the slots
    events = Recorder(pool)
    pool.run(fake_job(cells), events)
    outcomes = {cid: o for kind, cid, o in events.log if kind == "finished"}
    assert set(outcomes) == set(cells)
    assert outcomes["die"].status == "failed" and "killed by signal 9" in outcomes["die"].error
    assert all(o.status == "done" for cid, o in outcomes.items() if cid != "die")
    assert events.most == 4
    started = [(cid, dev.split("/")) for kind, cid, dev in events.log if kind == "started"]
    first_gpu: dict[str, str] = {}  # worker pid → its GPU, in the order workers first started
    for _, (gpu, pid) in started:
        first_gpu.setdefault(pid, gpu)
    gpus = list(first_gpu.values())
    assert sorted(gpus[:4]) == ["3", "3", "5", "5"]  # the first 4 workers: 2 per GPU
    assert len(gpus) == 5  # one replacement, for the worker that died ...
    (dead_gpu,) = [gpu for cid, (gpu, _) in started if cid == "die"]
    assert gpus[4] == dead_gpu  # ... on the GPU whose slot it freed
    assert not pool._workers and not pool._retired


def test_a_driver_error_stops_workers_blocked_on_a_full_pipe(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(local, "_worker_main", fake_worker)
    pool = LocalPool(fake_job(["flood", "a"]).config, 2)

    class Halting(Recorder):
        def progress(self, cell_id, step, total):
            time.sleep(0.5)  # the flooding worker fills the pipe and blocks sending
            raise HaltError("no space left on device (test)")

    began = time.monotonic()
    with pytest.raises(HaltError, match="no space left"):
        pool.run(fake_job(["flood", "a"]), Halting(pool))
    assert time.monotonic() - began < 10
    assert not multiprocessing.active_children()


def test_an_oserror_raised_by_the_driver_is_not_taken_for_a_dead_worker(monkeypatch):
    monkeypatch.setattr(local, "_worker_main", fake_worker)
    pool = LocalPool(fake_job(["a", "b"]).config, 2)

    class Failing(Recorder):
        def finished(self, cell_id, outcome):
            raise OSError(5, "Input/output error (test)")

    with pytest.raises(OSError, match="Input/output error"):
        pool.run(fake_job(["a", "b"]), Failing(pool))
    assert not pool._workers


# ---- the executor's decisions --------------------------------------------------------------


def test_local_refuses_more_than_one_gpu_per_cell_on_cuda_only(monkeypatch):
    job = fake_job(["a"])
    job.config = WorkerConfig(output="/x", cwd="/", device="cpu")
    job.gpus = 2.0
    local.LocalExecutor().check(job)  # on the CPU `gpus` means nothing: ignored
    monkeypatch.setattr(local, "resolve_device", lambda wanted: "cuda")
    with pytest.raises(PcnbenchError, match=r"resources\.gpus: 2 GPUs per cell.*one GPU"):
        local.LocalExecutor().check(job)
    for fine in (None, 0.0, 0.25, 0.5, 1.0):
        job.gpus = fine
        local.LocalExecutor().check(job)


@pytest.mark.parametrize(
    ("device", "gpus", "jobs", "visible", "expected"),
    [
        ("cuda", 0.25, None, None, (8, 2, 4, ["0", "1"])),  # 2 GPUs × 4 slots
        ("cuda", 0.25, 3, None, (3, 2, 4, ["0", "1"])),
        ("cuda", 0.5, None, "4,6", (4, 2, 2, ["4", "6"])),  # the driver's own GPU list
        ("cuda:1", 0.25, None, "4,6", (4, 1, 4, ["6"])),  # that GPU only
        ("cuda", 1.0, 2, None, (2, 2, 1, ["0", "1"])),  # one cell per GPU, as before
        ("cuda", None, 4, None, (2, 2, 1, ["0", "1"])),
        ("cpu", 0.25, 3, None, (3, 0, 1, [])),  # gpus ignored on the CPU
    ],
)
def test_local_sizes_the_pool_from_the_gpu_fraction(
    monkeypatch, device, gpus, jobs, visible, expected
):
    import torch

    made = []

    class Pool:
        def __init__(self, config, workers, n_gpus, per_gpu, ids):
            made.append(((workers, n_gpus, per_gpu, ids), config))

        def run(self, job, events):
            pass

    monkeypatch.setattr(local, "LocalPool", Pool)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    job = fake_job([f"c{i}" for i in range(20)])
    job.config = WorkerConfig(output="/x", cwd="/", device=device, threads=1)
    job.gpus, job.jobs = gpus, jobs
    local.LocalExecutor().run(job, None)
    ((args, config),) = made
    assert args == expected
    assert config.device == ("cuda" if device == "cuda:1" else device)
