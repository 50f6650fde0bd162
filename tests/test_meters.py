"""Meters: NVML (counter, polling, missing), RAPL (zones, wraparound, permissions), codecarbon,
labels, nesting, and no network during a run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from pcnbench.api import Meter, MeterProbe, Reading
from pcnbench.cli import main
from pcnbench.metering import MeterSet, energy_columns, scale_estimates, subtract
from pcnbench_plugins.meters import CodecarbonMeter, MemoryMeter, NvmlMeter, RaplMeter
from tests.conftest import BASE_SUITE


def fake_nvml(*, counter: bool = True, library: bool = True, watts: float = 100.0, n: int = 2):
    """A stand-in for the pynvml module: each counter read advances 250 J per device."""

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801, N818 - pynvml's names
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801, N818 - pynvml's names
        pass

    state = {"energy_mj": dict.fromkeys(range(n), 0)}

    def init():
        if not library:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def energy(handle):
        if not counter:
            raise NVMLError_NotSupported("Not Supported")
        state["energy_mj"][handle] += 250_000
        return state["energy_mj"][handle]

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        NVMLError_LibraryNotFound=NVMLError_LibraryNotFound,
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: n,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetHandleByUUID=lambda uuid: int(uuid.rsplit("-", 1)[1]),
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=lambda handle: watts * 1000,
        state=state,
    )


def test_nvml_counter_gives_joules_per_visible_device(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = NvmlMeter(nvml=fake_nvml())
    assert meter.probe() == MeterProbe(True, "nvml_counter", "2 visible GPU(s)")
    (reading,) = meter.stop(meter.start())
    # one more read of each of two devices after the start: 2 × 250 J
    assert (reading.component, reading.joules, reading.method) == ("gpu", 500.0, "nvml_counter")
    assert not reading.estimate


def test_nvml_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = fake_nvml(n=4)
    meter = NvmlMeter(nvml=nvml)
    meter.stop(meter.start())
    # device 1 alone is read: once to detect its counter, then at start and stop
    assert [nvml.state["energy_mj"][i] for i in range(4)] == [0, 750_000, 0, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert NvmlMeter(nvml=fake_nvml()).probe().detail == "no visible NVIDIA GPU"


def test_nvml_without_counter_polls_power_and_integrates(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    meter = NvmlMeter(nvml=fake_nvml(counter=False, watts=100.0), poll_interval_s=0.02)
    meter.prepare()
    handle = meter.start()
    began = time.perf_counter()
    time.sleep(0.3)
    (reading,) = meter.stop(handle)
    elapsed = time.perf_counter() - began
    meter.close()
    assert reading.method == "nvml_power_poll"
    assert reading.joules == pytest.approx(100.0 * elapsed, rel=0.1)


def test_nvml_library_missing_is_unmetered_with_the_reason():
    meter = NvmlMeter(nvml=fake_nvml(library=False))
    assert meter.probe() == MeterProbe(False, "unmetered", "no NVML library (no NVIDIA driver)")
    (reading,) = meter.stop(meter.start())
    assert math.isnan(reading.joules) and reading.method == "unmetered"
    assert reading.note == "no NVML library (no NVIDIA driver)"


def rapl_tree(root: Path, package_uj: int, dram_uj: int, max_uj: int = 1_000_000) -> Path:
    """A fake /sys/class/powercap: package-0 with core and dram sub-zones, plus psys."""
    zones = {
        "intel-rapl:0": ("package-0", package_uj),
        "intel-rapl:0/intel-rapl:0:0": ("core", 5),
        "intel-rapl:0/intel-rapl:0:1": ("dram", dram_uj),
        "intel-rapl:1": ("psys", 7),
    }
    for rel, (name, uj) in zones.items():
        zone = root / rel
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text(f"{uj}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return root


def test_rapl_sums_package_and_dram_once_and_handles_wraparound(tmp_path):
    root = rapl_tree(tmp_path, package_uj=900_000, dram_uj=100)
    meter = RaplMeter(root=root)
    assert meter.probe().detail == "intel-rapl:0 (cpu), intel-rapl:0:1 (dram)"
    handle = meter.start()
    # package wraps past max_energy_range_uj: 900,000 → 1,000,000 (+1 to 0) → 50,000
    rapl_tree(tmp_path, package_uj=50_000, dram_uj=2_100)
    readings = {r.component: r for r in meter.stop(handle)}
    assert readings["cpu"].joules == pytest.approx((100_000 + 1 + 50_000) / 1e6)
    assert readings["dram"].joules == pytest.approx(2_000 / 1e6)
    assert {r.method for r in readings.values()} == {"rapl"}


def test_rapl_permission_denied_and_absent_are_labelled(tmp_path, monkeypatch):
    absent = RaplMeter(root=tmp_path / "nope")
    assert absent.probe().detail == f"no RAPL ({tmp_path / 'nope'} absent)"
    root = rapl_tree(tmp_path / "sys", 1, 1)
    real = Path.read_text

    def guarded(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", guarded)
    meter = RaplMeter(root=root)
    readings = meter.stop(meter.start())
    assert [(r.component, r.method) for r in readings] == [
        ("cpu", "unmetered"),
        ("dram", "unmetered"),
    ]
    assert readings[0].note.startswith("RAPL not readable: permission denied")


def test_codecarbon_none_result_is_an_unmetered_estimate():
    meter = CodecarbonMeter()

    class Tracker:
        final_emissions_data = None

        def start(self):
            pass

        def stop(self):
            return None

    meter._module = types.SimpleNamespace(OfflineEmissionsTracker=lambda **kw: Tracker())
    (reading,) = meter.stop(meter.start())
    assert reading.estimate and math.isnan(reading.joules)
    assert reading.note == "codecarbon returned no data"


def test_codecarbon_estimate_is_positive_and_labelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any file codecarbon wrote would land here
    meter = CodecarbonMeter("DEU")
    meter.prepare()
    handle = meter.start()
    time.sleep(0.2)
    (reading,) = meter.stop(handle)
    assert reading.estimate and reading.method == "codecarbon_estimate"
    assert reading.joules > 0 and reading.extra["co2_kg"] > 0
    assert list(tmp_path.iterdir()) == []


def test_memory_meter_reports_a_peak_in_bytes():
    meter = MemoryMeter()
    handle = meter.start()
    block = torch.ones(64, 1024, 1024)  # 256 MiB
    (reading,) = meter.stop(handle)
    del block
    assert reading.method == "rss_peak"
    assert reading.extra["peak_mem_bytes"] >= 256 * 2**20


class Clock(Meter):
    """A meter whose joules are 100 W × elapsed seconds; fails when told to."""

    name = "clock"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def probe(self) -> MeterProbe:
        return MeterProbe(True, "clock", "test")

    def start(self):
        if self.fail:
            raise RuntimeError("sensor unplugged")
        return time.perf_counter()

    def stop(self, handle):
        return [Reading("cpu", 100.0 * (time.perf_counter() - handle), "clock")]


def test_a_failing_meter_is_a_label_not_a_crash_and_short_windows_are_flagged():
    meters = MeterSet([Clock(fail=True), Clock()])
    readings = meters.stop(meters.start(), seconds=0.01)
    assert readings[0].method == "unmetered"
    assert "sensor unplugged" in readings[0].note
    assert readings[1].note == "window 0.01 s < 1 s"


def test_measured_and_estimated_energy_never_mix():
    phase = types.SimpleNamespace(
        kind="train",
        readings=[
            Reading("gpu", 50.0, "nvml_counter"),
            Reading("cpu", math.nan, "unmetered", note="RAPL not readable: permission denied"),
            Reading("machine", 80.0, "codecarbon_estimate", estimate=True, extra={"co2_kg": 1e-5}),
        ],
    )
    other = types.SimpleNamespace(kind="eval", readings=[Reading("gpu", 7.0, "nvml_counter")])
    cols = energy_columns([phase, other])
    assert cols["train_energy_j"] == 50.0 and cols["train_energy_j_est"] == 80.0
    assert cols["co2_kg_est"] == 1e-5
    assert cols["energy_method"] == (
        "gpu: nvml_counter; cpu: unmetered (RAPL not readable: permission denied)"
    )
    nothing = energy_columns([types.SimpleNamespace(kind="train", readings=[])])
    assert math.isnan(nothing["train_energy_j"]) and math.isnan(nothing["train_energy_j_est"])


def test_nested_measured_energy_is_subtracted_and_estimates_scale_with_time():
    outer = [Reading("gpu", 10.0, "nvml_counter"), Reading("m", 4.0, "e", True, "", {"co2_kg": 2})]
    inner = [Reading("gpu", 3.0, "nvml_counter"), Reading("m", 1.0, "e", True, "", {"co2_kg": 1})]
    left = subtract(outer, inner)
    assert [(r.joules, r.extra) for r in left] == [(7.0, {}), (4.0, {"co2_kg": 2})]
    scaled = scale_estimates(left, 0.25)
    assert [(r.joules, r.extra) for r in scaled] == [(7.0, {}), (1.0, {"co2_kg": 0.5})]


def test_session_charges_evaluation_energy_to_eval_phases(host, write_suite):
    from pcnbench.api import TensorSplits
    from pcnbench.recipe import Recipe
    from pcnbench.session import Session

    x = torch.rand(256, 1, 8, 8)
    y = torch.randint(0, 4, (256,))
    data = TensorSplits(x, y, x, y, (0.5,), (0.3,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    session = Session(model, data, Recipe(epochs=2, eval_every=1), seed=0, meters=[Clock()])
    session.train()
    train = next(p for p in session.phases if p.kind == "train")
    (reading,) = train.readings
    # 100 W × (train wall − carved evaluations), to clock-read precision
    assert reading.joules == pytest.approx(100.0 * train.wall_s, rel=0.05, abs=0.05)


def test_quickstart_style_run_opens_no_network_connection(write_suite, tmp_path):
    suite = write_suite(BASE_SUITE)
    script = textwrap.dedent(
        f"""
        import sys

        def deny(event, args):
            if event == "socket.connect":
                raise RuntimeError(f"network access during a run: {{args[1:]}}")

        sys.addaudithook(deny)
        from pcnbench.cli import main
        sys.exit(main(["run", {str(suite)!r}, "--output", {str(tmp_path / "out")!r}, "--quiet"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert main(["results", str(tmp_path / "out"), "--format", "json"]) == 0


def test_results_carry_labelled_energy_latency_and_memory(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["run", str(write_suite(BASE_SUITE)), "--output", str(out), "--quiet", "--no-report"])
        == 0
    )
    capsys.readouterr()
    main(["results", str(out), "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    if not torch.cuda.is_available():
        assert row["train_energy_j"] is None  # NaN: nothing measured here
        assert "gpu: unmetered" in row["energy_method"]
    assert row["train_energy_j_est"] > 0 and row["co2_kg_est"] > 0
    assert row["latency_ms"] > 0 and row["throughput_sps"] > 0
    assert row["inference_method"].startswith("measured on")
    assert row["peak_mem_bytes"] > 0 and row["peak_mem_method"] in (
        "rss_peak",
        "cuda_max_allocated",
    )


def test_no_meter_leaves_figures_unmeasured_and_says_so(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    suite = str(write_suite(BASE_SUITE))
    assert main(["run", suite, "--output", str(out), "--quiet", "--no-meter", "--no-report"]) == 0
    capsys.readouterr()
    main(["results", str(out), "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert (
        row["latency_ms"] is None and row["inference_method"] == "not measured: metering disabled"
    )
    assert row["energy_method"] == "unmetered (no meters enabled)"


def test_env_command_reports_each_meter_truthfully(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert f"CUDA available: {torch.cuda.is_available()}" in text
    for meter in (NvmlMeter(), RaplMeter(), CodecarbonMeter(), MemoryMeter()):
        probe = meter.probe()
        line = next(line for line in text.splitlines() if f"│ {meter.name} " in line)
        assert ("yes" if probe.available else "no") in line and probe.method in line
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: the table and sentences wrap
    assert main(["env"]) == 0
    narrow = capsys.readouterr().out
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert " ".join(narrow.split()).count("executor local (executors): available") == 1


def test_cell_estimates_are_apportioned_to_results_by_training_time():
    from pcnbench.metering import apportion_estimates

    cell = [
        Reading("machine", 200.0, "codecarbon_estimate", estimate=True, extra={"co2_kg": 4e-5}),
        Reading("gpu", 50.0, "nvml_counter"),
    ]
    rows = [{"train_time_s": 2.5, "train_energy_j_est": math.nan}, {"train_time_s": 1.0}]
    kept = {"train_time_s": 1.0, "train_energy_j_est": 7.0}
    apportion_estimates([*rows, kept], cell, window_s=10.0)
    # 200 J over a 10 s cell: 20 W; 4e-5 kg over 10 s
    assert rows[0]["train_energy_j_est"] == pytest.approx(50.0)
    assert rows[0]["co2_kg_est"] == pytest.approx(1e-5)
    assert rows[1]["train_energy_j_est"] == pytest.approx(20.0)
    assert rows[0]["energy_est_method"] == (
        "codecarbon_estimate: cell-average power × train_time_s"
    )
    assert kept["train_energy_j_est"] == 7.0  # a phase-level estimate is never overwritten


def test_inference_is_measured_once_per_architecture_pair_and_leaves_the_rng_alone():
    from torch import nn

    from pcnbench.inference import measure_inference

    def mlp(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))

    torch.manual_seed(0)
    model, dense = mlp(16), mlp(16)
    state = torch.get_rng_state()
    first = measure_inference(model, (8,), 4, "cpu", dense=dense)
    assert torch.equal(torch.get_rng_state(), state)  # measuring draws from its own generator
    assert first["latency_ms"] > 0 and "earlier result" not in first["inference_method"]
    masked = mlp(16)
    masked[0].register_buffer("weight_mask", torch.zeros_like(masked[0].weight))
    again = measure_inference(masked, (8,), 4, "cpu", dense=dense)
    assert again["latency_ratio"] == first["latency_ratio"]
    assert again["latency_ms"] == first["latency_ms"]
    assert again["inference_method"].endswith(
        "(the figures of an earlier result with these architectures)"
    )
    other = measure_inference(mlp(32), (8,), 4, "cpu", dense=dense)
    assert "earlier result" not in other["inference_method"]
    bigger_batch = measure_inference(mlp(16), (8,), 8, "cpu", dense=dense)
    assert "earlier result" not in bigger_batch["inference_method"]
    other_parent = measure_inference(mlp(16), (8,), 4, "cpu", dense=mlp(32))
    assert "earlier result" not in other_parent["inference_method"]
