"""The `slurm` executor: option validation and state mapping everywhere; on a real SLURM cluster
(`.ci/slurm-up.sh` starts a single-node one) the same numbers as the local executor, a job
cancelled with `scancel` mid-cell resumed by the next run, Ctrl-C cancelling the run's jobs,
and a failing cell's error stored."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pcnbench.api import Executor, Outcome, run_cell
from pcnbench.errors import PcnbenchError, SuiteError
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import load_plugins
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from pcnbench_plugins.executors import slurm
from tests.conftest import BASE_SUITE

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = [
    *("cell_id", "idx", "params", "macs", "accuracy", "test_loss", "step", "epochs_trained"),
    "trunk_reused_epochs",  # cells after a trunk group's first reuse its dense trunk
]


def _no_cluster() -> str | None:
    """Why the cluster tests cannot run here (None: a SLURM node answers and takes jobs)."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'pcnbench[slurm]')"
    missing = [tool for tool in ("sinfo", "sbatch", "squeue", "scancel") if not shutil.which(tool)]
    if missing:
        return f"no SLURM here ({', '.join(missing)} not on PATH; .ci/slurm-up.sh starts a cluster)"
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return "no SLURM controller answers (sinfo timed out after 10 s)"
    states = done.stdout.split()
    if done.returncode != 0 or not {"idle", "mix", "alloc"} & set(states):
        said = (done.stderr.strip() or ", ".join(states) or "no nodes").splitlines()[0]
        return f"no SLURM node takes jobs here (sinfo: {said}; .ci/slurm-up.sh starts a cluster)"
    return None


NO_CLUSTER = _no_cluster()
on_cluster = pytest.mark.skipif(NO_CLUSTER is not None, reason=NO_CLUSTER or "")

# A small grid: dense, magnitude pruning and PCN on digits, two seeds (two trunk groups of three
# cells each: three waves of SLURM jobs).
GRID = """\
name: grid
seeds: [0, 1]
deterministic: true
datasets:
  - digits
models:
  - name: mlp
    params: {width: 128, depth: 2}
methods:
  - dense
  - name: magnitude
    params: {sparsity: 0.5, finetune_epochs: 1}
  - name: pcn
    params: {at_epoch: 1}
recipe:
  epochs: 2
  batch_size: 64
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
metering: {enabled: false}
"""

# One dense cell of about 20 s on a core, checkpointed at every epoch boundary.
LONG = """\
name: long
seeds: [0]
deterministic: true
checkpoints: {every_s: 0}
datasets:
  - name: synthetic
    params: {n_train: 16384, n_test: 256, classes: 10}
models:
  - name: mlp
    params: {width: 128, depth: 2}
methods:
  - dense
recipe:
  epochs: 90
  batch_size: 32
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  eval_every: 1
metering: {enabled: false}
"""


def stored(out: Path) -> pd.DataFrame:
    """The results' numbers (no clock readings), in a stable order."""
    with sqlite3.connect(out / "results.db") as db:
        frame = pd.read_sql_query(f"SELECT {', '.join(NUMBERS)} FROM results", db)
    return frame.sort_values(["cell_id", "idx"]).reset_index(drop=True)


def losses(out: Path) -> pd.DataFrame:
    """Every epoch's training loss and test accuracy, in a stable order."""
    with sqlite3.connect(out / "results.db") as db:
        frame = pd.read_sql_query("SELECT cell_id, idx, train_loss, test_accuracy FROM epochs", db)
    return frame.sort_values(["cell_id", "idx"]).reset_index(drop=True)


def cells(out: Path) -> dict[str, tuple[str, str | None, str]]:
    """cell id → (status, error, device)."""
    with sqlite3.connect(out / "results.db") as db:
        rows = db.execute("SELECT cell_id, status, error, device FROM cells").fetchall()
    return {cell_id: (status, error, device) for cell_id, status, error, device in rows}


def pcnbench(suite: Path, out: Path, *extra: str) -> subprocess.Popen:
    """`pcnbench run SUITE --output OUT EXTRA...` in a fresh process, one torch thread."""
    command = [sys.executable, "-m", "pcnbench.cli", "run", str(suite), "--output", str(out)]
    return subprocess.Popen(
        [*command, "--quiet", "--no-report", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=ROOT,
    )


def finished(process: subprocess.Popen, timeout: float = 300) -> int:
    """The exit code of `process`; its stderr is printed (pytest shows it on failure)."""
    _, err = process.communicate(timeout=timeout)
    print(err, file=sys.stderr)
    return process.returncode


def job_ids(out: Path) -> list[str]:
    """The SLURM jobs a run submitted (submitit keeps a folder per job under <output>/slurm)."""
    found = [p.name for p in (out / "slurm").glob("*") if list(p.glob("*_submitted.pkl"))]
    return sorted(found)


def squeue_state(job_id: str, say: str = "%T") -> str:
    """The job's state as squeue says it ("" when it is no longer listed)."""
    done = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", say],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def kill_wait_s() -> int:
    """The cluster's KillWait: how long a cancelled job's processes run on after SIGTERM."""
    done = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
    )
    match = re.search(r"^KillWait\s*=\s*(\d+)", done.stdout, re.M)
    return int(match.group(1)) if match else 30


def wait_for(
    condition,
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    every_s: float = 0.1,
) -> None:
    """Poll `condition` every `every_s` until it holds; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.stderr.read()}")
        time.sleep(every_s)
    pytest.fail(f"{what} did not happen within {timeout:g} s")


# ---------------------------------------------------------------- everywhere (no cluster)


def test_options_are_validated_where_the_suite_is_read(host, write_suite, capsys):
    from pcnbench.cli import main

    head = BASE_SUITE + "executor:\n  name: slurm\n  options:\n"
    path = write_suite(head + "    partition: gpu\n    partiton: gpu\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path, host)
    assert str(err.value) == (
        f"{path}:19:5: executor.options.partiton: unknown key 'partiton'; did you mean"
        f" 'partition'? (allowed: {', '.join(slurm.SlurmOptions.model_fields)})"
    )
    path = write_suite(head + "    time: soon\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path, host)
    assert str(err.value).startswith(f"{path}:18:11: executor.options.time: must be minutes")
    assert "such as 2:00:00 or 1-12:00:00 (got 'soon')" in str(err.value)
    path = write_suite(head + "    cpus_per_task: many\n")
    with pytest.raises(SuiteError, match=r":18:20: executor.options.cpus_per_task: must be a"):
        load_suite(path, host)
    path = write_suite(head + "    additional: {array: 0-3}\n")
    with pytest.raises(SuiteError, match=r"additional\.array: pcnbench sets this sbatch option"):
        load_suite(path, host)
    # on the command line: exit 2, the located message, no traceback
    path = write_suite(head + "    gpus_per_task: -1\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:18:20: executor.options.gpus_per_task: must be greater than or equal" in err
    assert "Traceback" not in err
    # a valid block, every key
    path = write_suite(
        head + "    partition: gpu\n    time: '1-00:00:00'\n    gpus_per_task: 1\n"
        "    cpus_per_task: 8\n    mem: 32G\n    array_parallelism: 4\n"
        "    setup: [module load cuda]\n    additional: {qos: high, exclusive: true}\n"
    )
    assert load_suite(path, host).suite.executor.options["mem"] == "32G"


def test_options_of_another_executor_are_refused_when_slurm_runs_the_suite(
    host, write_suite, tmp_path
):
    text = BASE_SUITE + "executor: {name: ray, options: {num_cpus: 2}}\n"
    loaded = load_suite(write_suite(text), host)
    with pytest.raises(PcnbenchError, match="executor 'slurm': unknown option 'num_cpus'"):
        Runner(loaded, host, output=tmp_path / "out", executor="slurm").run()
    assert not (tmp_path / "out" / "results.db").exists()


def test_without_submitit_check_and_env_say_what_to_install(
    host, write_suite, tmp_path, monkeypatch, capsys
):
    from pcnbench.cli import main

    monkeypatch.setitem(sys.modules, "submitit", None)  # as if submitit were not installed
    loaded = load_suite(write_suite(BASE_SUITE + "executor: slurm\n"), host)
    with pytest.raises(PcnbenchError, match=r"needs submitit.*pip install 'pcnbench\[slurm\]'"):
        Runner(loaded, host, output=tmp_path / "out").run()
    assert not (tmp_path / "out" / "results.db").exists()  # refused before starting anything
    assert main(["env"]) == 0
    assert "executor slurm (executors): not installed: pip install 'pcnbench[slurm]'" in (
        capsys.readouterr().out
    )


def test_a_fraction_of_a_gpu_and_cuda_without_gpus_are_refused(host, write_suite, tmp_path):
    pytest.importorskip("submitit")
    if not shutil.which("sbatch"):
        pytest.skip("no sbatch here: check() refuses for that first")
    text = BASE_SUITE + "executor: slurm\nresources: {gpus: 0.5}\n"
    loaded = load_suite(write_suite(text), host)
    with pytest.raises(
        PcnbenchError, match=r"resources\.gpus: 0\.5 GPUs per cell, but a SLURM job"
    ):
        Runner(loaded, host, output=tmp_path / "out", device="cuda").run()
    text = BASE_SUITE + "executor: slurm\nresources: {gpus: 0}\n"
    loaded = load_suite(write_suite(text), host)
    with pytest.raises(PcnbenchError, match="device 'cuda' with no GPU per cell"):
        Runner(loaded, host, output=tmp_path / "out", device="cuda").run()


def test_info_lists_the_options(host):
    from pcnbench.describe import describe_plugin

    text = describe_plugin(host, "slurm")
    assert "Options (the `executor.options` of a suite):" in text
    for key in slurm.SlurmOptions.model_fields:
        assert f"\n{key} " in text


class _Cancels(Executor):
    """Test-only executor: the first cell's "cluster job" is cancelled, the others run here."""

    name = "cancels"

    def run(self, job, events) -> None:
        first, *rest = job.cells
        events.started(first, "cpu@elsewhere")
        events.finished(first, Outcome("interrupted", error="job 7 ended CANCELLED"))
        for cell_id in rest:
            events.started(cell_id, "cpu")
            events.finished(cell_id, run_cell(job.config, job.cells[cell_id]))


def test_an_interrupted_outcome_leaves_one_cell_for_the_next_run_and_the_rest_go_on(
    write_suite, tmp_path
):
    class Plugin:
        @hookimpl
        def register_executors(self, register) -> None:
            register(_Cancels())

    host = load_plugins(extra=[("cancels", Plugin())])
    text = BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]") + "executor: cancels\n"
    loaded = load_suite(write_suite(text), host)
    out = tmp_path / "out"
    summary = Runner(loaded, host, output=out, metering=False).run()
    assert summary.interrupted and len(summary.done) == 1 and not summary.failed
    found = sorted((status, error) for status, error, _ in cells(out).values())
    assert found == [("done", None), ("interrupted", "job 7 ended CANCELLED")]
    with sqlite3.connect(out / "results.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    assert len(Runner(loaded, host, output=out).plan()[1]) == 1  # the next run retries it


@pytest.mark.parametrize(
    ("given", "minutes"),
    [(30, 30), ("90", 90), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440), ("1-12:30:01", 2191)],
)
def test_time_limits_in_slurms_formats(given, minutes):
    assert slurm.slurm_minutes(given) == minutes


@pytest.mark.parametrize("bad", [0, "0:00", "soon", "1:2:3:4", True])
def test_time_limits_that_are_not(bad):
    with pytest.raises(ValueError):
        slurm.slurm_minutes(bad)


@pytest.mark.parametrize(
    ("state", "status", "said"),
    [
        ("CANCELLED", "interrupted", "ended CANCELLED; the next run resumes this cell"),
        ("TIMEOUT", "interrupted", "ended TIMEOUT; the next run resumes"),
        ("PREEMPTED", "interrupted", "ended PREEMPTED; the next run resumes"),
        ("NODE_FAIL", "interrupted", "ended NODE_FAIL (NodeDown); the next run resumes"),
        ("FAILED", "failed", "ended FAILED (NonZeroExitCode) without a result; its log"),
        ("OUT_OF_MEMORY", "failed", "without a result (give it more memory: executor.options.mem)"),
        ("COMPLETED", "failed", "ended COMPLETED without a result"),
    ],
)
def test_job_states_map_to_cell_outcomes(tmp_path, monkeypatch, state, status, said):
    monkeypatch.setattr(slurm, "_RESULT_GRACE_S", 0.0)
    log = tmp_path / "7_1_0_log.err"
    log.write_text("Traceback ...\nMemoryError\n", encoding="utf-8")
    job = SimpleNamespace(job_id="7_1", paths=SimpleNamespace(stderr=log))
    sub = slurm._Submitted("cell", job)
    reason = {"NODE_FAIL": "NodeDown", "FAILED": "NonZeroExitCode"}.get(state, "None")
    assert slurm._judge(sub, ("RUNNING", "None")) is None
    outcome = slurm._judge(sub, (state, reason))
    assert outcome.status == status
    assert outcome.error.startswith("SLURM job 7_1 ") and said in outcome.error
    if status == "failed":
        assert outcome.error.endswith("MemoryError")  # the tail of the job's log


def test_a_job_squeue_no_longer_lists_fails_its_cell_after_three_polls(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "_RESULT_GRACE_S", 0.0)
    job = SimpleNamespace(job_id="8", paths=SimpleNamespace(stderr=tmp_path / "none"))
    sub = slurm._Submitted("cell", job)
    assert slurm._judge(sub, None) is None and slurm._judge(sub, None) is None
    outcome = slurm._judge(sub, None)
    assert outcome.status == "failed" and "no longer listed by squeue" in outcome.error


# ---------------------------------------------------------------- on a SLURM cluster


@pytest.mark.slurm
@on_cluster
def test_a_suite_through_slurm_stores_what_the_local_executor_stores(write_suite, tmp_path):
    suite = write_suite(GRID)
    local, remote = tmp_path / "local", tmp_path / "slurm"
    assert finished(pcnbench(suite, local)) == 0
    began = time.monotonic()
    assert finished(pcnbench(suite, remote, "--executor", "slurm")) == 0
    took = time.monotonic() - began
    found = cells(remote)
    assert len(found) == 6 and {s for s, _, _ in found.values()} == {"done"}
    # every cell ran as a SLURM job of its own, on a CPU of a node
    jobs = {
        cell_id: re.fullmatch(r"cpu@\S+, slurm job (\d+)(_\d+)?", d)
        for cell_id, (_, _, d) in found.items()
    }
    assert all(jobs.values()) and len({m.group(0) for m in jobs.values()}) == 6
    with sqlite3.connect(remote / "results.db") as db:
        order = db.execute("SELECT cell_id, seed, method FROM cells ORDER BY seed").fetchall()
    # the first cells of the two trunk groups went out as one array; each later cell of a
    # group as a job submitted once the previous one ended (it reuses the dense trunk)
    job_of = {(seed, method): jobs[c] for c, seed, method in order}
    assert job_of[0, "dense"].group(1) == job_of[1, "dense"].group(1)  # one array
    assert job_of[0, "dense"].group(2) and job_of[1, "dense"].group(2)  # its tasks _0, _1
    for seed in (0, 1):
        ids = [int(job_of[seed, method].group(1)) for method in ("dense", "magnitude", "pcn")]
        assert ids[0] < ids[1] < ids[2]
    pd.testing.assert_frame_equal(stored(remote), stored(local))
    pd.testing.assert_frame_equal(losses(remote), losses(local))
    with sqlite3.connect(remote / "results.db") as db:
        reused = db.execute(
            "SELECT c.method, r.trunk_reused_epochs FROM results r JOIN cells c USING (cell_id)"
            " WHERE c.method = 'magnitude'"
        ).fetchall()
    assert [epochs for _, epochs in reused] == [2.0, 2.0]  # the dense cells' trunks, shared
    both = stored(remote).merge(stored(local), on=["cell_id", "idx"], suffixes=("_slurm", ""))
    labels = {c: f"{method} seed {seed}" for c, seed, method in order}
    both.insert(0, "cell", both["cell_id"].map(labels))
    print(f"\n6 cells through SLURM in {took:.1f} s (local executor vs slurm):")
    shown = ["cell", "params", "params_slurm", "macs", "macs_slurm", "accuracy", "accuracy_slurm"]
    print(both[shown].to_string(index=False))
    assert (tmp_path / "slurm" / "slurm").is_dir()  # the jobs' logs, under the output


@pytest.mark.slurm
@on_cluster
def test_scancel_mid_cell_then_the_next_run_resumes_it_and_a_preempted_job_requeues(
    write_suite, tmp_path
):
    if kill_wait_s() > 20:
        pytest.skip(f"KillWait is {kill_wait_s()} s here: a cancelled job would finish its cell")
    suite = write_suite(LONG)
    whole, out = tmp_path / "whole", tmp_path / "out"
    reference = pcnbench(suite, whole)  # uninterrupted, local, on the other core
    run = pcnbench(suite, out, "--executor", "slurm")
    live = out / "checkpoints"
    # 1. once the cell has checkpointed an epoch boundary, scancel its job
    wait_for(
        lambda: list(live.glob("*/live.pt")) and job_ids(out),
        timeout=120,
        what="a checkpoint of the cell",
        process=run,
    )
    (first,) = job_ids(out)
    subprocess.run(["scancel", first], check=True, timeout=30)
    assert finished(run) == 130  # interrupted: run the same command to continue
    ((status, error, _),) = cells(out).values()
    assert status == "interrupted"
    assert f"SLURM job {first} ended CANCELLED" in error and "resumes this cell" in error
    assert squeue_state(first) in ("CANCELLED", "")
    ((cell_dir, checkpoint),) = [(p.parent, p.stat().st_mtime_ns) for p in live.glob("*/live.pt")]

    # 2. the same command resumes it; once it has trained on, SLURM's preemption signal as
    # submitit expects it (USR2): submitit requeues the job, and the cell resumes again
    run = pcnbench(suite, out, "--executor", "slurm")
    wait_for(
        lambda: len(job_ids(out)) == 2 and (cell_dir / "live.pt").stat().st_mtime_ns > checkpoint,
        timeout=120,
        what="a checkpoint of the resumed cell",
        process=run,
    )
    second = next(j for j in job_ids(out) if j != first)
    subprocess.run(["scancel", "--signal=USR2", second], check=True, timeout=30)
    # SLURM holds a requeued job for two minutes while its node cleans up after it: once the
    # job has been pending that long for 2 s (the node is this one, and idle), let it start
    pending = []
    wait_for(
        lambda: (
            pending.append(squeue_state(second, "%T %r") == "PENDING BeginTime")
            or pending[-4:] == [True] * 4
        ),
        timeout=60,
        what="the job requeued",
        process=run,
        every_s=0.5,
    )
    subprocess.run(["scontrol", "update", f"jobid={second}", "StartTime=now"], timeout=30)
    assert finished(run) == 0
    ((status, _, device),) = cells(out).values()
    assert status == "done" and device.endswith(f"slurm job {second}")
    assert not cell_dir.exists()  # a finished cell drops its checkpoints
    assert finished(reference) == 0
    pd.testing.assert_frame_equal(stored(out), stored(whole))
    pd.testing.assert_frame_equal(losses(out), losses(whole))
    with sqlite3.connect(out / "results.db") as db:
        (resumed,) = db.execute("SELECT resumed FROM results").fetchone()
        runs = [s for (s,) in db.execute("SELECT status FROM runs ORDER BY run_id")]
    assert resumed == 1 and runs == ["interrupted", "done"]
    log = "".join(p.read_text(encoding="utf-8") for p in (out / "slurm" / second).glob("*_log.*"))
    assert "this job is preempted" in log and f"Requeued job {second}" in log  # by submitit
    both = stored(out).merge(stored(whole), on=["cell_id", "idx"], suffixes=("", "_whole"))
    print(
        f"\nscancel of job {first} mid-cell, resumed as job {second}, preempted (USR2) and"
        " requeued, resumed again (vs an uninterrupted local run):"
    )
    with pd.option_context("display.precision", 12):
        shown = ["params", "params_whole", "macs", "macs_whole", "accuracy", "accuracy_whole"]
        print(both[[*shown, "test_loss", "test_loss_whole"]].to_string(index=False))


@pytest.mark.slurm
@on_cluster
def test_ctrl_c_in_the_driver_cancels_the_runs_jobs(write_suite, tmp_path):
    suite = write_suite(LONG)
    out = tmp_path / "out"
    run = pcnbench(suite, out, "--executor", "slurm")
    wait_for(
        lambda: (
            (out / "results.db").exists() and "running" in {s for s, _, _ in cells(out).values()}
        ),
        timeout=120,
        what="the cell started",
        process=run,
    )
    (job_id,) = job_ids(out)
    run.send_signal(signal.SIGINT)
    assert finished(run) == 130
    ((status, error, _),) = cells(out).values()
    assert status == "interrupted" and "Ctrl-C" in error
    wait_for(
        lambda: squeue_state(job_id) in ("CANCELLED", ""),
        timeout=60,
        what=f"job {job_id} cancelled",
    )


@pytest.mark.slurm
@on_cluster
def test_a_failing_cell_stores_its_error_and_the_others_finish(
    host_with_boom, write_suite, tmp_path, monkeypatch
):
    # the jobs rebuild the test-only `boom` plugin from tests.conftest (sbatch exports this)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(ROOT)
    text = BASE_SUITE.replace("  - dense", "  - dense\n  - name: boom\n    params: {when: train}")
    loaded = load_suite(write_suite(text + "executor: slurm\n"), host_with_boom)
    out = tmp_path / "out"
    summary = Runner(loaded, host_with_boom, output=out, metering=False, share=False).run()
    assert len(summary.done) == 1 and len(summary.failed) == 1
    by_method = {}
    with sqlite3.connect(out / "results.db") as db:
        for method, status, error in db.execute("SELECT method, status, error FROM cells"):
            by_method[method] = (status, error)
    assert by_method["dense"] == ("done", None)
    status, error = by_method["boom"]
    assert status == "failed"
    assert "RuntimeError: boom: deliberate failure for the test" in error
