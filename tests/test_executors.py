"""Executors: the local pool, Ray, worker deaths, Ctrl-C, and resuming a run killed with -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from pcnbench.errors import PcnbenchError, SuiteError
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from pcnbench_plugins.executors.local import LocalPool
from tests.conftest import BASE_SUITE, python_output

GRID = BASE_SUITE.replace("{width: 8, depth: 1}", "{width: [8, 16], depth: 1}").replace(
    "seeds: [0]", "seeds: [0, 1]"
)
NUMBERS = ["cell_id", "idx", "params", "macs", "accuracy", "test_loss", "step", "epochs_trained"]


def stored(out) -> pd.DataFrame:
    """The results' numbers (no clock readings), in a stable order."""
    with sqlite3.connect(out / "results.db") as db:
        frame = pd.read_sql_query(f"SELECT {', '.join(NUMBERS)} FROM results", db)
    return frame.sort_values(["cell_id", "idx"]).reset_index(drop=True)


def statuses(out) -> dict[str, str]:
    with sqlite3.connect(out / "results.db") as db:
        return dict(db.execute("SELECT cell_id, status FROM cells"))


class Events:
    """Records what an executor reports."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, object]] = []

    def started(self, cell_id, device):
        self.log.append(("started", cell_id, device))

    def progress(self, cell_id, step, total):
        self.log.append(("progress", cell_id, (step, total)))

    def finished(self, cell_id, outcome):
        self.log.append(("finished", cell_id, outcome))


def test_unknown_executor_is_a_located_error_with_a_suggestion(host, write_suite):
    path = write_suite(BASE_SUITE + "executor: rayy\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path, host)
    assert f"{path}:" in str(err.value) and "executor:" in str(err.value)
    assert "unknown executor 'rayy'; did you mean 'ray'?" in str(err.value)
    loaded = load_suite(write_suite(BASE_SUITE), host)
    with pytest.raises(PcnbenchError, match="--executor: unknown executor 'lokal'"):
        Runner(loaded, host, executor="lokal").run()


def test_executor_options_are_checked_and_missing_ray_says_what_to_install(
    host, write_suite, tmp_path, monkeypatch
):
    text = BASE_SUITE + "executor: {name: ray, options: {num_cpu: 2}}\n"
    loaded = load_suite(write_suite(text), host)
    with pytest.raises(PcnbenchError, match="unknown option 'num_cpu'"):
        Runner(loaded, host, output=tmp_path / "a").run()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    loaded = load_suite(write_suite(BASE_SUITE + "executor: ray\n"), host)
    with pytest.raises(PcnbenchError, match=r"pip install 'pcnbench\[ray\]'"):
        Runner(loaded, host, output=tmp_path / "b").run()
    assert not (tmp_path / "b" / "results.db").exists()  # refused before starting anything


def test_local_pool_reports_start_progress_and_outcome_of_every_cell(host, write_suite, tmp_path):
    loaded = load_suite(write_suite(GRID), host)
    runner = Runner(loaded, host, output=tmp_path / "out", metering=False, jobs=2)
    job = runner.job(runner.plan()[1])
    cells = list(job.cells)
    events = Events()
    LocalPool(job.config, 2).run(job, events)
    for cell_id in cells:
        kinds = [kind for kind, cid, _ in events.log if cid == cell_id]
        assert kinds[0] == "started" and kinds[-1] == "finished"
        steps = [p for kind, cid, p in events.log if cid == cell_id and kind == "progress"]
        assert steps and steps[-1] == (8, 8)  # 2 epochs of 4 steps
        (outcome,) = [p for kind, cid, p in events.log if cid == cell_id and kind == "finished"]
        assert outcome.status == "done" and outcome.results[0]["step"] == 8


def test_a_worker_that_dies_fails_only_its_cell_and_the_rest_run(
    host_with_boom, write_suite, tmp_path
):
    text = GRID.replace("  - dense", "  - dense\n  - name: boom\n    params: {when: die}")
    loaded = load_suite(write_suite(text), host_with_boom)
    out = tmp_path / "out"
    summary = Runner(loaded, host_with_boom, output=out, metering=False, jobs=2).run()
    assert len(summary.done) == 4 and len(summary.failed) == 4
    with sqlite3.connect(out / "results.db") as db:
        rows = db.execute("SELECT method, status, error FROM cells").fetchall()
    assert sorted(status for method, status, _ in rows if method == "dense") == ["done"] * 4
    for method, status, error in rows:
        if method == "boom":
            assert status == "failed"
            assert "died (killed by signal 9) while running this cell" in error


class InterruptingBars:
    """A progress display whose first update of a cell's bar is interrupted by Ctrl-C."""

    def add_task(self, *args, **kwargs):
        return len(args)

    def update(self, *args, **kwargs):
        raise KeyboardInterrupt

    def advance(self, *args):
        pass

    def remove_task(self, *args):
        pass


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_ctrl_c_marks_running_cells_interrupted_and_stops_the_workers(
    host, write_suite, tmp_path, executor
):
    if executor == "ray":
        ray = pytest.importorskip("ray")
    text = GRID + ("executor: {name: ray, options: {num_cpus: 2}}\n" if executor == "ray" else "")
    loaded = load_suite(write_suite(text), host)
    out = tmp_path / "out"
    runner = Runner(loaded, host, output=out, metering=False, jobs=2, progress=InterruptingBars())
    summary = runner.run()
    assert summary.interrupted and not summary.done
    found = statuses(out)
    assert "interrupted" in found.values() and "done" not in found.values()
    if executor == "ray":
        assert not ray.is_initialized()
    else:
        import multiprocessing

        deadline = time.monotonic() + 10
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not multiprocessing.active_children()
    # the next run trains exactly the cells that did not finish
    assert len(Runner(loaded, host, output=out).plan()[1]) == 4


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_two_cells_packed_on_one_gpu_store_the_same_results_as_one_at_a_time(
    host, write_suite, tmp_path
):
    text = GRID + "deterministic: true\nresources: {gpus: 0.5}\n"
    loaded = load_suite(write_suite(text), host)
    alone, packed = tmp_path / "alone", tmp_path / "packed"
    # cuda:0: both workers on that GPU, however many this machine has
    summary = Runner(loaded, host, output=alone, metering=False, jobs=1, device="cuda:0").run()
    assert not summary.failed and len(summary.done) == 4
    summary = Runner(loaded, host, output=packed, metering=False, jobs=2, device="cuda:0").run()
    assert not summary.failed and len(summary.done) == 4
    pd.testing.assert_frame_equal(stored(packed), stored(alone))
    with sqlite3.connect(packed / "results.db") as db:
        devices = {d for (d,) in db.execute("SELECT device FROM cells")}
    assert len(devices) == 1 and "(GPU " in devices.pop()  # pool workers, one GPU


def test_ray_executor_stores_the_same_results_as_local(host, write_suite, tmp_path):
    ray = pytest.importorskip("ray")
    local = tmp_path / "local"
    loaded = load_suite(write_suite(GRID), host)
    assert not Runner(loaded, host, output=local, metering=False).run().failed
    text = GRID + "executor: {name: ray, options: {num_cpus: 2}}\nresources: {cpus: 1}\n"
    loaded = load_suite(write_suite(text, "ray.yaml"), host)
    remote = tmp_path / "ray"
    summary = Runner(loaded, host, output=remote, metering=False).run()
    assert not summary.failed and len(summary.done) == 4
    assert not ray.is_initialized()  # the instance this run started is shut down
    pd.testing.assert_frame_equal(stored(remote), stored(local))
    with sqlite3.connect(remote / "results.db") as db:
        devices = {d for (d,) in db.execute("SELECT device FROM cells")}
    assert all(d.startswith("cpu@") for d in devices), devices


KILL_SUITE = """\
name: killed
seeds: [0]
deterministic: true
checkpoints: {every_s: 0}
datasets:
  - name: synthetic
    params: {n_train: 2048, n_test: 256}
models:
  - name: mlp
    params: {width: 64, depth: 2}
methods:
  - dense
  - name: lottery
    params: {levels: 3, rate: 0.5, rewind: 1ep}
recipe:
  epochs: 6
  batch_size: 32
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  eval_every: 1
metering: {enabled: false}
"""


def _pcnbench(suite, out) -> subprocess.Popen:
    command = [sys.executable, "-m", "pcnbench.cli", "run", str(suite), "--output", str(out)]
    return subprocess.Popen(
        [*command, "--quiet", "--no-report"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_sigkill_mid_cell_then_the_same_run_resumes_to_identical_results(write_suite, tmp_path):
    suite = write_suite(KILL_SUITE)
    whole = tmp_path / "whole"
    assert _pcnbench(suite, whole).wait(timeout=300) == 0

    out = tmp_path / "killed"
    victim = _pcnbench(suite, out)
    # wait until the dense cell is done and the lottery cell has checkpointed past level 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        ops = list(out.glob("checkpoints/*/op_2.pt"))
        if ops and (out / "results.db").exists() and "done" in statuses(out).values():
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run ended before it could be killed: " + victim.stderr.read()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert sorted(statuses(out).values()) == ["done", "running"]
    (cell_dir,) = (out / "checkpoints").iterdir()

    assert _pcnbench(suite, out).wait(timeout=300) == 0
    assert set(statuses(out).values()) == {"done"}
    assert not cell_dir.exists()  # a finished cell drops its checkpoints
    # same numbers as the uninterrupted run, each result once
    pd.testing.assert_frame_equal(stored(out), stored(whole))
    with sqlite3.connect(out / "results.db") as db:
        resumed = db.execute("SELECT resumed, idx FROM results ORDER BY idx").fetchall()
        runs = db.execute("SELECT status FROM runs ORDER BY run_id").fetchall()
    assert 1 in {r for r, _ in resumed}
    assert [s for (s,) in runs] == ["killed", "done"]


def test_cell_queue_keeps_trunk_groups_together_and_steals_when_idle():
    from pcnbench.api import CellQueue

    groups = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B"}
    queue = CellQueue(list(groups), groups)
    first, second = queue.next(), queue.next()
    assert (first, second) == ("a1", "b1")  # a new worker starts a group nobody has started
    assert queue.next(after="b1") == "b2"  # then stays on its group
    assert queue.next(after="b2") == "a2"  # its group is done: steals from the fullest
    assert queue.next(after="a1") == "a3"
    assert queue.next(after="a3") is None and len(queue) == 0
    chains = CellQueue(list(groups), groups)
    assert [chains.next(steal=False) for _ in range(3)] == ["a1", "b1", None]
    assert chains.next(after="a1", steal=False) == "a2"
    assert CellQueue(["x", "y"]).next() == "x"  # no groups: every cell on its own


def test_a_worker_that_cannot_start_stops_the_run_without_failing_cells(
    host, write_suite, tmp_path
):
    from dataclasses import replace

    loaded = load_suite(write_suite(GRID), host)
    runner = Runner(loaded, host, output=tmp_path / "out", metering=False, jobs=2)
    job = runner.job(runner.plan()[1])
    config = replace(job.config, plugins_in_code=(("x", "no_such_module:Thing"),))
    events = Events()
    with pytest.raises(PcnbenchError, match=r"(?s)could not start.*no_such_module"):
        LocalPool(config, 2).run(job, events)
    assert [kind for kind, _, _ in events.log if kind != "progress"] == []


def test_ray_worker_that_dies_fails_only_its_cell(host_with_boom, write_suite, tmp_path):
    pytest.importorskip("ray")
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)  # so Ray workers import tests.conftest
    text = BASE_SUITE.replace("  - dense", "  - dense\n  - name: boom\n    params: {when: die}")
    text += (
        "executor:\n  name: ray\n  options:\n    num_cpus: 2\n"
        f"    runtime_env: {{env_vars: {{PYTHONPATH: {root!r}}}}}\n"
    )
    loaded = load_suite(write_suite(text), host_with_boom)
    out = tmp_path / "out"
    summary = Runner(loaded, host_with_boom, output=out, metering=False, share=False).run()
    assert len(summary.done) == 1 and len(summary.failed) == 1
    with sqlite3.connect(out / "results.db") as db:
        rows = dict(db.execute("SELECT method, status || ': ' || coalesce(error, '') FROM cells"))
    assert rows["dense"] == "done: "
    assert rows["boom"].startswith("failed: Ray task failed (")
    assert "the next run retries this cell" in rows["boom"]


def test_env_says_which_executors_can_run_here(capsys, monkeypatch):
    from pcnbench.cli import main

    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert "executor local (executors): available" in text
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["env"]) == 0
    assert "executor ray (executors): not installed: pip install 'pcnbench[ray]'" in (
        capsys.readouterr().out
    )


def test_sigkill_of_a_worker_fails_its_cell_and_the_next_run_resumes_it(write_suite, tmp_path):
    import psutil

    suite = write_suite(KILL_SUITE)
    whole = tmp_path / "whole"
    assert _pcnbench(suite, whole).wait(timeout=300) == 0

    out = tmp_path / "workers"
    command = [sys.executable, "-m", "pcnbench.cli", "run", str(suite), "--output", str(out)]
    driver = subprocess.Popen(
        [*command, "--quiet", "--no-report", "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # once the dense cell is done and the lottery cell checkpointed past level 0, kill -9 the
    # worker processes (not the driver)
    deadline = time.monotonic() + 240
    workers = []
    while time.monotonic() < deadline and driver.poll() is None and not workers:
        if list(out.glob("checkpoints/*/op_2.pt")) and "done" in statuses(out).values():
            # forked by the worker server (the driver's child), or spawned by the driver
            workers = [
                p
                for p in psutil.Process(driver.pid).children(recursive=True)
                if p.ppid() != driver.pid or "spawn_main" in " ".join(p.cmdline())
            ]
        time.sleep(0.02)
    assert workers, "no worker to kill: " + (driver.stderr.read() if driver.poll() else "")
    for worker in workers:
        worker.kill()
    assert driver.wait(timeout=300) == 1  # a failed cell
    assert sorted(statuses(out).values()) == ["done", "failed"]

    assert _pcnbench(suite, out).wait(timeout=300) == 0
    assert set(statuses(out).values()) == {"done"}
    pd.testing.assert_frame_equal(stored(out), stored(whole))
    with sqlite3.connect(out / "results.db") as db:
        assert 1 in {r for (r,) in db.execute("SELECT resumed FROM results")}


def test_jobs_auto_is_a_worker_per_core_and_per_trunk_group_on_the_cpu():
    from pcnbench_plugins.executors.local import pool_size

    assert pool_size("auto", cells=16, devices=0, lanes=2, cores=8) == 2  # two trunk groups
    assert pool_size("auto", cells=16, devices=0, lanes=5, cores=2) == 2  # two cores
    assert pool_size("auto", cells=16, devices=0, lanes=1, cores=8) == 1  # the driver alone
    assert pool_size("auto", cells=3, devices=0, lanes=9, cores=8) == 3  # never past the cells
    assert pool_size(None, cells=16, devices=0, lanes=2, cores=8) == 1
    assert pool_size(4, cells=16, devices=0, lanes=2, cores=8) == 4  # a number is taken as is
    assert pool_size("auto", cells=100, devices=2, per_gpu=4, lanes=1) == 8  # GPU slots


def test_jobs_auto_validates_in_the_suite_and_on_the_command_line(
    host, write_suite, tmp_path, capsys
):
    from pcnbench.cli import main

    for bad in ("0", "many", "true", "[2]"):
        path = write_suite(BASE_SUITE + f"executor: {{name: local, jobs: {bad}}}\n")
        with pytest.raises(SuiteError) as err:
            load_suite(path, host)
        assert f"{path}:" in str(err.value)
        assert 'executor.jobs: must be a whole number of worker processes ≥ 1, or "auto"' in (
            str(err.value)
        )
    path = write_suite(BASE_SUITE + "executor: {name: local, jobs: auto}\n")
    assert load_suite(path, host).suite.executor.jobs == "auto"
    with pytest.raises(SystemExit):
        main(["run", str(path), "--jobs", "0"])
    assert "--jobs: must be a whole number ≥ 1 or 'auto' (got '0')" in capsys.readouterr().err


def test_run_warms_the_executor_with_the_runs_settings_before_building_models(
    write_suite, tmp_path, monkeypatch
):
    """`pcnbench run` lets the executor start its workers while the grid is validated."""
    import pcnbench.suite.loading
    from pcnbench.cli import main
    from pcnbench_plugins.executors.local import LocalExecutor

    calls: list[tuple] = []
    monkeypatch.setattr(
        LocalExecutor, "warm", lambda self, jobs, device: calls.append(("warm", jobs, device))
    )
    checked = pcnbench.suite.loading.check_compatibility

    def check(loaded, host):
        calls.append(("models",))
        return checked(loaded, host)

    monkeypatch.setattr(pcnbench.suite.loading, "check_compatibility", check)
    path = write_suite(BASE_SUITE + "executor: {name: local, jobs: 3}\n")
    out = tmp_path / "out"
    assert (
        main(["run", str(path), "--output", str(out), "--quiet", "--no-report", "--jobs", "1"]) == 0
    )
    assert calls[:2] == [("warm", 1, "auto"), ("models",)]  # the command line's --jobs wins
    calls.clear()
    assert main(["run", str(path), "--output", str(out), "--dry-run"]) == 0
    assert calls == [("models",)]  # a dry run starts nothing


def test_workers_start_from_a_preloaded_server_where_the_platform_has_one():
    import multiprocessing

    from pcnbench_plugins.executors.local import PRELOAD, worker_context

    context = worker_context()
    if "forkserver" in multiprocessing.get_all_start_methods():
        assert context.get_start_method() == "forkserver"
        assert "pcnbench.execution" in PRELOAD  # torch and the cell path, imported once
    else:
        assert context.get_start_method() == "spawn"


def test_the_machine_load_leaves_out_the_runs_own_helper_processes():
    """A worker server importing torch as the run starts is not load beside the run."""
    from pcnbench.runner import own_running_tasks

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while own_running_tasks() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert own_running_tasks() >= 1
    finally:
        busy.kill()
        busy.wait()
    assert own_running_tasks() == 0


def test_the_worker_servers_preload_leaves_cuda_untouched():
    """CUDA cannot be used in a process forked after it was initialised, and reads
    CUDA_VISIBLE_DEVICES (set per worker) only then: the server must never start it."""
    probe = (
        "import torch\n"
        "calls = []\n"
        "count = torch._C._cuda_getDeviceCount\n"
        "torch._C._cuda_getDeviceCount = lambda *a: calls.append(1) or count(*a)\n"
        "from pcnbench_plugins.executors.local import PRELOAD\n"
        "import importlib\n"
        "for name in PRELOAD:\n"
        "    importlib.import_module(name)\n"
        # flushed: the last preload ends the process without flushing at exit
        "print(len(calls), torch.cuda.is_initialized(), flush=True)\n"
    )
    assert python_output(probe).split() == ["0", "False"]


def test_an_executor_whose_warm_fails_warns_and_the_run_goes_on(
    write_suite, tmp_path, monkeypatch, capsys
):
    from pcnbench.cli import main
    from pcnbench_plugins.executors.local import LocalExecutor

    def fail(self, jobs, device):
        raise OSError("no room for a server")

    monkeypatch.setattr(LocalExecutor, "warm", fail)
    path = write_suite(BASE_SUITE)
    assert (
        main(["run", str(path), "--output", str(tmp_path / "out"), "--quiet", "--no-report"]) == 0
    )
    err = capsys.readouterr().err
    assert (
        "warning: executor 'local' (plugin 'executors'): warm() failed (OSError: no room for a"
        " server); the run goes on without its early start"
    ) in err


def test_a_worker_server_that_cannot_start_falls_back_to_spawned_workers(
    host, write_suite, tmp_path, monkeypatch
):
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("workers are spawned on this platform anyway")

    def no_room(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(forkserver.ForkServer, "ensure_running", no_room)
    loaded = load_suite(write_suite(GRID), host)
    runner = Runner(loaded, host, output=tmp_path / "out", metering=False, jobs=2)
    job = runner.job(runner.plan()[1])
    events = Events()
    pool = LocalPool(job.config, 2)
    pool.run(job, events)
    assert pool._context.get_start_method() == "spawn"
    finished = [p for kind, _, p in events.log if kind == "finished"]
    assert len(finished) == len(job.cells) and all(o.status == "done" for o in finished)


def test_the_worker_server_leaves_without_tearing_its_interpreter_down():
    """Its last preload ends the process at exit, before any teardown (1.5 s with torch)."""
    from pcnbench_plugins.executors.local import PRELOAD

    assert PRELOAD[-1] == "pcnbench_plugins.executors._server_exit"
    probe = (
        "import sys\n"
        "class Torn:\n"
        "    def __del__(self):\n"
        "        sys.stdout.write('torn down')\n"
        "        sys.stdout.flush()\n"
        "kept = Torn()\n"
    )
    normal = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert normal.stdout == "torn down"  # a normal exit finalises what is left
    quick = subprocess.run(
        [sys.executable, "-c", f"import {PRELOAD[-1]}\n" + probe], capture_output=True, text=True
    )
    assert quick.returncode == 0 and quick.stdout == ""


def test_exit_handlers_a_plugin_registers_in_a_worker_run_when_the_worker_ends(
    write_suite, tmp_path
):
    from pcnbench.manager import load_plugins
    from tests.conftest import AtExitPlugin

    host = load_plugins(extra=[("test-atexit", AtExitPlugin())])
    note = tmp_path / "exits.txt"
    text = GRID.replace("  - dense", f"  - name: atexit\n    params: {{note: '{note}'}}")
    loaded = load_suite(write_suite(text), host)
    summary = Runner(loaded, host, output=tmp_path / "out", metering=False, jobs=2).run()
    assert len(summary.done) == 4
    pids = note.read_text().split()
    assert len(pids) == 4  # each cell's handler ran once, as its worker ended
    assert len(set(pids)) == 2 and str(os.getpid()) not in pids  # in the two workers
