"""pytest-benchmark setup for pcnbench's benchmarks: devices, sizes, and the figures summary.

Run with `tox -e bench` (or `pytest benchmarks`); the normal `pytest` run never collects this
folder (testpaths = tests). Options:

- `--bench-devices cpu,cuda` (default): the devices a benchmark with a `device` argument runs
  on; cuda skips without CUDA, and GPU-only benchmarks skip on cpu.
- `--bench-full`: CPU benchmarks at the sizes the old scripts used (minutes each) instead of
  their short mode.
- `--smoke`: everything tiny, GPU-only benchmarks included on cpu: a check, in a minute or two,
  that the GPU script cannot fail for a silly reason. Its figures mean nothing.
- `--bench-strict`: fail a benchmark whose figure misses its target (otherwise only printed).
- `--figures-json FILE`: write the figures of the summary to FILE as JSON.

Every benchmark stores its figures (ratios, targets) in `benchmark.extra_info`, so they are in
the JSON that `--benchmark-autosave` / `--benchmark-json` write, and prints them in a summary
at the end of the session.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

_FIGURES: list[Figure] = []


@dataclass
class Figure:
    """One printed figure: which benchmark, what, its value and target."""

    test: str
    name: str
    value: float | str
    unit: str = ""
    target: str = ""
    ok: bool | None = None
    device: str = ""

    def line(self) -> str:
        """The figure as one summary line."""
        value = f"{self.value:.4g}" if isinstance(self.value, float) else str(self.value)
        verdict = "" if self.ok is None else ("  PASS" if self.ok else "  MISS")
        target = f"  (target {self.target})" if self.target else ""
        where = f" [{self.device}]" if self.device else ""
        return f"{self.test}{where}: {self.name} = {value}{self.unit}{target}{verdict}"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The benchmark options (see the module docstring)."""
    group = parser.getgroup("pcnbench benchmarks")
    group.addoption("--bench-devices", default="cpu,cuda", help="comma-separated devices")
    group.addoption("--bench-full", action="store_true", help="CPU benchmarks at full size")
    group.addoption("--smoke", action="store_true", help="everything tiny, GPU-only on cpu too")
    group.addoption("--bench-strict", action="store_true", help="fail figures missing targets")
    group.addoption("--figures-json", default=None, help="write the summary's figures here")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers benchmarks use."""
    config.addinivalue_line("markers", "gpu_only: a GPU figure; on cpu only with --smoke")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `device` over --bench-devices."""
    if "device" in metafunc.fixturenames:
        devices = [d.strip() for d in metafunc.config.getoption("--bench-devices").split(",")]
        metafunc.parametrize("device", [d for d in devices if d], indirect=True)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    """The device of this run; skips cuda without CUDA and GPU-only benchmarks on cpu."""
    name: str = request.param
    smoke = request.config.getoption("--smoke")
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("CUDA is not available")
    elif request.node.get_closest_marker("gpu_only") and not smoke:
        pytest.skip("GPU-only benchmark (runs on cpu with --smoke, tiny)")
    return name


@dataclass(frozen=True)
class Scale:
    """How big a benchmark runs: `smoke` (tiny), `short` (CPU default) or `full`."""

    mode: str

    def pick(self, smoke: Any, short: Any, full: Any) -> Any:
        """The value for this mode."""
        return {"smoke": smoke, "short": short, "full": full}[self.mode]


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    """smoke with --smoke; full on cuda or with --bench-full; else short."""
    if request.config.getoption("--smoke"):
        return Scale("smoke")
    callspec = getattr(request.node, "callspec", None)
    on_cuda = callspec is not None and str(callspec.params.get("device", "")).startswith("cuda")
    return Scale("full" if on_cuda or request.config.getoption("--bench-full") else "short")


class Recorder:
    """Puts figures into `benchmark.extra_info` and the end-of-session summary."""

    def __init__(self, request: pytest.FixtureRequest, benchmark: Any) -> None:
        self.request = request
        self.benchmark = benchmark
        self.strict = request.config.getoption("--bench-strict")
        callspec = getattr(request.node, "callspec", None)
        self.device = str(callspec.params.get("device", "")) if callspec else ""
        self.test = request.node.name
        self.misses: list[str] = []

    def __call__(
        self,
        name: str,
        value: float | str,
        unit: str = "",
        target: str = "",
        ok: bool | None = None,
    ) -> None:
        """Record one figure; `ok` False with --bench-strict fails the benchmark at its end."""
        # a test without the benchmark fixture (a comparison) keeps its figures in the summary
        info: dict[str, Any] = self.benchmark.extra_info if self.benchmark is not None else {}
        if self.device.startswith("cuda"):
            import torch

            info.setdefault("gpu", torch.cuda.get_device_name(0))
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        info[name] = value
        if target:
            info[f"{name}_target"] = target
        if self.request.config.getoption("--smoke"):
            ok = None  # tiny runs: no verdicts
        figure = Figure(self.test, name, value, unit, target, ok, self._where())
        _FIGURES.append(figure)
        if ok is False:
            self.misses.append(figure.line())

    def _where(self) -> str:
        if self.device.startswith("cuda"):
            import torch

            return torch.cuda.get_device_name(0)
        return ""  # cpu: the test's name says so

    def check(self) -> None:
        """With --bench-strict, fail if a figure missed its target."""
        if self.strict and self.misses:
            pytest.fail("missed: " + "; ".join(self.misses))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Any:
    """Record a benchmark's figures: `figures(name, value, unit, target=..., ok=...)`."""
    uses = "benchmark" in request.fixturenames
    recorder = Recorder(request, request.getfixturevalue("benchmark") if uses else None)
    yield recorder
    recorder.check()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print every recorded figure at the end of the session (and write them as JSON)."""
    if not _FIGURES:
        return
    terminalreporter.section("pcnbench figures")
    for figure in _FIGURES:
        terminalreporter.write_line(figure.line())
    path = config.getoption("--figures-json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps([asdict(f) for f in _FIGURES], indent=1) + "\n")
        terminalreporter.write_line(f"figures written to {path}")
