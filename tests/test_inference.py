"""Inference timing: paired against dense, its interval and noisy flag, threads, reports."""

from __future__ import annotations

import copy
import json
import math
import random
import sqlite3

import pandas as pd
import pytest
import torch
from torch import nn

import pcnbench.inference as inference
from pcnbench.api import Method, Params, TensorSplits
from pcnbench.cli import main
from pcnbench.hookspecs import hookimpl
from pcnbench.inference import measure_inference, median_interval, noisy
from pcnbench.jobs import WorkerConfig, usable_cores
from pcnbench.manager import load_plugins
from pcnbench.recipe import Recipe
from pcnbench.runner import MachineLoad, Runner
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.reporters.html import render_html
from pcnbench_plugins.reporters.points import model_groups
from pcnbench_plugins.reporters.summary import finding
from pcnbench_plugins.reporters.tables import (
    comparison_frame,
    comparison_tables,
    to_latex,
    to_markdown,
)
from tests.conftest import BASE_SUITE


@pytest.fixture(autouse=True)
def fresh_measurements(monkeypatch: pytest.MonkeyPatch):
    """Every test measures anew (no figures memoized by an earlier test), threads restored."""
    monkeypatch.setattr(inference, "_MEASURED", {})
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def mlp(width: int, inputs: int = 256) -> nn.Module:
    return nn.Sequential(
        nn.Linear(inputs, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 10),
    )


# Paired timing, for real ----------------------------------------------------------------------


def test_a_model_timed_against_itself_has_a_ratio_of_about_one() -> None:
    torch.manual_seed(0)
    dense = mlp(256)
    model = copy.deepcopy(dense)
    state = torch.get_rng_state()
    row = measure_inference(model, (256,), 32, "cpu", dense=dense)
    assert torch.equal(torch.get_rng_state(), state)  # its inputs come from a private generator
    assert 0.8 < row["latency_ratio"] < 1.25
    assert row["latency_ratio_low"] <= row["latency_ratio"] <= row["latency_ratio_high"]
    assert 0.8 < row["throughput_ratio"] < 1.25
    assert row["latency_ms"] > 0 and row["dense_latency_ms"] > 0
    assert row["latency_blocks"] >= inference.LATENCY_BLOCKS[0]
    assert row["inference_threads"] in (1, torch.get_num_threads())
    assert dense.training and model.training  # modes put back


def test_a_model_with_far_more_work_is_slower_by_its_paired_ratio() -> None:
    dense = mlp(128)
    model = mlp(1024)  # the hidden layer: 64× the multiply-accumulates
    row = measure_inference(model, (256,), 32, "cpu", dense=dense)
    assert row["latency_ratio"] > 1.3
    assert row["throughput_ratio"] < 1 / 1.3  # the bigger model gets through fewer samples
    smaller = measure_inference(dense, (256,), 32, "cpu", dense=model)
    assert smaller["latency_ratio"] < 1 / 1.3


# Paired timing, with a fake clock ---------------------------------------------------------------


def fake_timer(monkeypatch: pytest.MonkeyPatch, seconds) -> list[str]:
    """Replace the timed forward with `seconds(name, call_index)`; returns the call order."""
    calls: list[str] = []

    def timed(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
        calls.append(model.name)
        return seconds(model.name, len(calls) - 1)

    monkeypatch.setattr(inference, "_timed", timed)
    return calls


def named(name: str, width: int = 8) -> nn.Module:
    net = mlp(width, inputs=4)
    net.name = name
    return net


def test_ratio_is_the_median_of_block_ratios_and_a_steady_ratio_is_not_noisy(monkeypatch) -> None:
    calls = fake_timer(monkeypatch, lambda name, i: 2e-3 if name == "model" else 1e-3)
    row = measure_inference(named("model", 16), (4,), 8, "cpu", dense=named("dense"))
    assert row["latency_ratio"] == pytest.approx(2.0)
    assert (row["latency_ratio_low"], row["latency_ratio_high"]) == pytest.approx((2.0, 2.0))
    assert row["latency_noisy"] is False
    assert row["latency_ms"] == pytest.approx(2.0) and row["dense_latency_ms"] == pytest.approx(1.0)
    assert row["throughput_ratio"] == pytest.approx(0.5)
    assert row["throughput_sps"] == pytest.approx(8 / 2e-3)
    # after the thread probe (dense only) and the warm-up (dense, model, ...): ABBA blocks
    timed = calls[calls.index("model") - 1 + 2 * inference.WARMUP :]
    assert timed[:8] == ["dense", "model", "model", "dense"] * 2
    assert row["latency_blocks"] == inference.LATENCY_BLOCKS[1]  # fake forwards take no time


def test_abba_blocks_cancel_drift_that_plain_pairs_would_turn_into_a_ratio(monkeypatch) -> None:
    # both models take the same time, but every forward is 1% slower than the one before
    fake_timer(monkeypatch, lambda name, i: 1e-3 * (1 + 0.01 * i))
    row = measure_inference(named("model"), (4,), 8, "cpu", dense=named("dense"))
    assert row["latency_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert row["throughput_ratio"] == pytest.approx(1.0, abs=1e-12)


def test_a_jittery_measurement_is_flagged_noisy(monkeypatch) -> None:
    rng = random.Random(0)
    # a forward takes 1 ms, or (a preempted one, every other one on average) 1 to 20 ms
    fake_timer(
        monkeypatch, lambda name, i: 1e-3 * (rng.uniform(1, 20) if rng.random() < 0.5 else 1)
    )
    row = measure_inference(named("model"), (4,), 8, "cpu", dense=named("dense"))
    assert row["latency_noisy"] is True
    spread = row["latency_ratio_high"] / row["latency_ratio_low"]
    assert spread > (1 + inference.NOISY_TOLERANCE) ** 2


def test_a_measurement_reused_for_the_same_architectures_says_so(monkeypatch) -> None:
    fake_timer(monkeypatch, lambda name, i: 1e-3)
    dense = named("dense")
    first = measure_inference(named("model"), (4,), 8, "cpu", dense=dense)
    again = measure_inference(named("model"), (4,), 8, "cpu", dense=dense)
    assert again["latency_ratio"] == first["latency_ratio"]
    assert again["inference_method"] == (
        first["inference_method"] + " (the figures of an earlier result with these architectures)"
    )


def test_threads_waiting_for_cores_are_timed_at_one_thread(monkeypatch) -> None:
    torch.set_num_threads(2)
    # a busy machine: at 2 threads every forward waits 40 ms for a core, at 1 it takes 1 ms
    fake_timer(monkeypatch, lambda name, i: 40e-3 if torch.get_num_threads() > 1 else 1e-3)
    row = measure_inference(named("model"), (4,), 8, "cpu", dense=named("dense"))
    assert row["inference_threads"] == 1
    assert row["latency_ms"] == pytest.approx(1.0)
    assert torch.get_num_threads() == 2  # put back
    monkeypatch.setattr(inference, "_MEASURED", {})
    fake_timer(monkeypatch, lambda name, i: 0.6e-3 if torch.get_num_threads() > 1 else 1e-3)
    idle = measure_inference(named("model"), (4,), 8, "cpu", dense=named("dense"))
    assert idle["inference_threads"] == 2


def test_median_interval_is_the_order_statistics_interval() -> None:
    # n = 21: the 95% interval of the median is [x(6), x(16)] (binomial tables)
    assert median_interval(list(range(1, 22))) == (6, 16)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few values: the whole range
    assert median_interval(list(range(2001)))[0] == 956  # large n: exact integers, no overflow
    assert noisy(1.0, 0.95, 1.05) is False
    assert noisy(1.0, 0.95, 1.2) is True
    assert noisy(0.5, 0.44, 0.52) is True  # 0.5 / 0.44 > 1.1: relative, not absolute
    assert noisy(math.nan, 1.0, 1.0) is True


# The session times every result against the model it started with ------------------------------


def splits() -> TensorSplits:
    g = torch.Generator().manual_seed(0)
    return TensorSplits(
        torch.rand(32, 256, generator=g),
        torch.randint(0, 10, (32,), generator=g),
        torch.rand(16, 256, generator=g),
        torch.randint(0, 10, (16,), generator=g),
        (0.5,),
        (0.25,),
    )


def test_a_session_records_the_latency_ratio_against_its_dense_model() -> None:
    recipe = Recipe(epochs=1, batch_size=16, optimizer={"name": "sgd", "lr": 0.1})
    session = Session(mlp(1024), splits(), recipe, seed=0)
    dense = session.record()
    assert 0.8 < dense["latency_ratio"] < 1.25  # the model it started with, against its copy
    session.model = mlp(64)  # a reduced architecture replaces it
    reduced = session.record()
    assert reduced["latency_ratio"] < 0.8
    assert reduced["dense_latency_ms"] > reduced["latency_ms"]
    assert isinstance(reduced["latency_noisy"], bool)
    unmeasured = Session(mlp(64), splits(), recipe, seed=0, measure_inference=False).record()
    assert math.isnan(unmeasured["latency_ratio"])


# Threads ----------------------------------------------------------------------------------------


class ThreadsMethod(Method):
    """Test-only method: records the torch threads its process runs at."""

    name = "threads"
    Params = Params

    def run(self, session, params: Params) -> None:
        """One epoch, one result."""
        session.train(until="end")
        session.record(torch_threads=torch.get_num_threads())


class ThreadsPlugin:
    """Registers `threads` (importable, so worker processes rebuild it)."""

    @hookimpl
    def register_methods(self, register) -> None:
        """Register the test method."""
        register(ThreadsMethod())


THREADS_SUITE = BASE_SUITE.replace("  - dense", "  - threads").replace(
    "seeds: [0]", "seeds: [0, 1]"
)


def _threads(out) -> list[int]:
    with sqlite3.connect(out / "results.db") as db:
        return [int(v) for (v,) in db.execute("SELECT torch_threads FROM results")]


def test_threads_reach_torch_in_each_cell_process(write_suite, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    host = load_plugins(extra=[("test-threads", ThreadsPlugin())])
    loaded = load_suite(write_suite(THREADS_SUITE), host)
    runs = {"pool3": (3, 2), "alone3": (3, 1), "alone": (None, 1), "pool": (None, 2)}
    for name, (threads, jobs) in runs.items():
        runner = Runner(
            loaded, host, output=tmp_path / name, metering=False, jobs=jobs, threads=threads
        )
        assert not runner.run().failed
    assert _threads(tmp_path / "pool3") == [3, 3]  # --threads N: N in every worker
    assert _threads(tmp_path / "alone3") == [3, 3]
    assert _threads(tmp_path / "alone") == [usable_cores()] * 2  # default: the usable cores
    assert _threads(tmp_path / "pool") == [max(1, usable_cores() // 2)] * 2  # shared out
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert WorkerConfig(output="", cwd="", device="cpu").threads_for(1) == 1
    assert WorkerConfig(output="", cwd="", device="cpu", threads=5).threads_for(2) == 5


def test_an_oversubscribed_run_says_so_once_and_stores_it(write_suite, tmp_path, capsys) -> None:
    threads = usable_cores() + 1  # more threads than cores: oversubscribed on any machine
    out = tmp_path / "out"
    args = ["run", str(write_suite(BASE_SUITE)), "--output", str(out), "--quiet", "--no-report"]
    assert main([*args, "--no-meter", "--threads", str(threads)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "oversubscribed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: the machine is oversubscribed")
    assert f"1 process × {threads} torch threads on {usable_cores()} usable cores" in warnings[0]
    with sqlite3.connect(out / "results.db") as db:
        (env,) = db.execute("SELECT environment FROM runs").fetchone()
    env = json.loads(env)
    assert env["oversubscribed"] is True and env["cell_threads"] == threads
    assert main([*args, "--threads", "0"]) == 2  # a usage error


def test_machine_load_warns_when_the_run_would_oversubscribe_the_cores() -> None:
    def load(load_1m, running, threads, processes=1) -> MachineLoad:
        return MachineLoad(load_1m, running, 2, 2, threads, processes)

    assert load(0.5, 0, 2).warning() is None  # an idle 2-core machine, 2 threads
    assert load(None, None, 1).warning() is None  # nothing known: threads only
    busy = load(3.5, 0, 2)  # busy for the last minute
    assert busy.oversubscribed and "load average 3.5 on 2 cores" in busy.warning()
    # busy loops just started: the load average trails, the tasks running now do not
    now = load(0.5, 2, 2)
    assert "2 other tasks running beside 2 torch threads on 2 cores" in now.warning()
    assert load(0.5, 2, 1).warning() is not None and load(0.5, 1, 1).warning() is None
    many = load(0.1, 0, 2, processes=2)
    assert "2 processes × 2 torch threads on 2 usable cores" in many.warning()
    assert many.warning().count("warning:") == 1  # one line, every reason in it
    assert "\n" not in many.warning()


# Reports ----------------------------------------------------------------------------------------


def _results(rows: list[tuple]) -> pd.DataFrame:
    """Results of one model: (method, params JSON, seed, latency_ratio, latency_noisy)."""
    out = []
    for method, params, seed, ratio, flagged in rows:
        out.append(
            {
                "cell_id": f"c{method}{params}{seed}",
                "label": f"digits · mlp · {method} · seed {seed}",
                "dataset": "digits",
                "dataset_params": "{}",
                "model": "mlp",
                "model_params": "{}",
                "method": method,
                "method_params": params,
                "seed": seed,
                "status": "done",
                "error": None,
                "result": 0,
                "params": 100 if method == "dense" else 25,
                "dense_params": 100,
                "macs": 100 if method == "dense" else 25,
                "dense_macs": 100,
                "accuracy": 0.9,
                "train_time_s": 1.0,
                "epochs_trained": 10.0,
                "latency_ms": 0.1 * ratio,
                "dense_latency_ms": 0.1,
                "latency_ratio": ratio,
                "latency_noisy": flagged,
                "inference_method": "measured on cpu",
            }
        )
    return pd.DataFrame(out)


REPORTED = [
    ("dense", "{}", 0, 1.01, 0),
    ("dense", "{}", 1, 0.99, 0),
    ("pcn", '{"keep": "f0.25"}', 0, 0.4, 0),  # 0.4 and 0.625: geometric mean 0.5, 2× faster
    ("pcn", '{"keep": "f0.25"}', 1, 0.625, 0),
    ("pcn", '{"keep": "f0.5"}', 0, 0.8, 0),
    ("pcn", '{"keep": "f0.5"}', 1, 0.8, 0),
    ("magnitude", '{"sparsity": 0.75}', 0, 1.0, 0),
    ("magnitude", '{"sparsity": 0.75}', 1, 0.2, 1),  # one seed too noisy to compare
]


def test_tables_show_the_measured_speedup_and_mark_noisy_rows() -> None:
    (table,) = comparison_tables(model_groups(_results(REPORTED)))
    rows = {r["method"] + r["setting"]: r for r in table.rows}
    pcn = rows["pcnkeep=f0.25"]
    assert pcn["measured_speedup"] == pytest.approx(2.0)
    assert pcn["speedup"] == pytest.approx(4.0)  # the theoretical one stays
    assert rows["magnitudesparsity=0.75"]["latency_noisy"] and not pcn["latency_noisy"]
    index = {r["method"] + r["setting"]: i for i, r in enumerate(table.rows)}
    # the noisy row's 2.2× is not "best", nor is dense against itself
    assert table.best["measured_speedup"] == {index["pcnkeep=f0.25"]}
    assert table.text("measured_speedup", index["magnitudesparsity=0.75"]) == "2.2× (noisy)"
    assert table.text("measured_speedup", index["pcnkeep=f0.5"]) == "1.25×"
    assert any("too noisy to compare for magnitude sparsity=0.75" in n for n in table.notes)
    md = to_markdown([table])
    assert "Measured speedup" in md and "| 2.2× (noisy) |" in md and "| **2.0×** |" in md
    csv = comparison_frame([table])
    first = csv[csv["method"] == "pcn"].iloc[0]
    assert first["measured_speedup"] == pytest.approx(2.0) and not first["latency_noisy"]
    tex = to_latex([table])
    line = next(ln for ln in tex.splitlines() if ln.startswith("pcn & keep=f0.25"))
    assert r"\textbf{2.0$\times$}" in line


def test_latex_drops_the_measured_speedup_with_the_latency_where_none_was_measured() -> None:
    frame = _results(REPORTED).drop(columns=["latency_ratio", "latency_noisy"])
    frame["latency_ms"] = math.nan
    tex = to_latex(comparison_tables(model_groups(frame)))
    assert "Meas.\\ speedup" not in tex and "Not measured: train energy, latency." in tex


def test_the_headline_and_html_report_say_what_the_paired_latency_measured(tmp_path) -> None:
    groups = model_groups(_results(REPORTED))
    assert "(measured: 2.0× faster than dense)" in finding(groups[0]).sentence
    noisy_only = model_groups(_results([r for r in REPORTED if r[0] != "pcn"]))
    assert "(measured latency too noisy to compare)" in finding(noisy_only[0]).sentence
    masked = [(*r[:3], 1.02, 0) if r[0] == "magnitude" else r for r in REPORTED if r[0] != "pcn"]
    assert "(measured: no faster than dense)" in finding(model_groups(_results(masked))[0]).sentence

    from pcnbench.api import ReportData

    data = ReportData(
        output_dir=tmp_path,
        suite="t",
        results=_results(REPORTED),
        cells=pd.DataFrame(),
        epochs=pd.DataFrame(),
        phases=pd.DataFrame(),
        runs=pd.DataFrame(),
    )
    html = render_html(data, tmp_path)
    assert "Measured speedup" in html
    assert '<span class="sub">noisy</span>' in html
    assert "too noisy to compare for magnitude sparsity=0.75" in html
