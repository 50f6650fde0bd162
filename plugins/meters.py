"""Built-in meters: GPU energy (NVML), CPU/DRAM energy (RAPL), codecarbon estimates, peak memory.

Every meter degrades to an "unmetered" reading with the reason when its hardware or library is
missing: a figure is either measured, estimated (and labelled so), or NaN with why.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import math
import os
import re
import threading
import time
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

from pcnbench.api import Meter, MeterProbe, Reading
from pcnbench.hookspecs import Register, hookimpl

__all__ = ["CodecarbonMeter", "MemoryMeter", "NvmlMeter", "RaplMeter"]


def _unmetered(component: str, why: str, estimate: bool = False) -> list[Reading]:
    return [Reading(component, math.nan, "unmetered", estimate=estimate, note=why)]


class NvmlMeter(Meter):
    """GPU energy per visible device: the total-energy counter (Volta+), else polled power."""

    name = "nvml"

    def __init__(self, nvml: ModuleType | None = None, poll_interval_s: float = 0.1) -> None:
        self._nvml = nvml
        self.poll_interval_s = poll_interval_s
        self._ready = False
        self._reason = ""
        self._counter: list[Any] = []  # handles with an energy counter
        self._polled: list[Any] = []  # handles measured by power polling
        self._samples: deque[tuple[float, float]] = deque(maxlen=2_000_000)  # (time, watts)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _setup(self) -> None:
        if self._ready or self._reason:
            return
        try:
            nvml = self._nvml or importlib.import_module("pynvml")
        except ImportError:
            self._reason = "nvidia-ml-py (pynvml) not installed"
            return
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            missing = getattr(nvml, "NVMLError_LibraryNotFound", ())
            self._reason = (
                "no NVML library (no NVIDIA driver)"
                if missing and isinstance(exc, missing)
                else f"NVML init failed: {exc}"
            )
            return
        try:
            handles = self._visible_handles(nvml)
        except nvml.NVMLError as exc:
            self._reason = f"NVML device lookup failed: {exc}"
            return
        if not handles:
            self._reason = "no visible NVIDIA GPU"
            return
        for handle in handles:
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self._counter.append(handle)
            except nvml.NVMLError:
                self._polled.append(handle)
        self._ready = True

    @staticmethod
    def _visible_handles(nvml: ModuleType) -> list[Any]:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        handles = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry:
                continue
            if entry.isdigit():
                handles.append(nvml.nvmlDeviceGetHandleByIndex(int(entry)))
            elif entry.startswith(("GPU-", "MIG-")):
                handles.append(nvml.nvmlDeviceGetHandleByUUID(entry))
            else:
                break  # CUDA ignores everything after an invalid entry
        return handles

    def _method(self) -> str:
        methods = (["nvml_counter"] if self._counter else []) + (
            ["nvml_power_poll"] if self._polled else []
        )
        return "+".join(methods)

    def probe(self) -> MeterProbe:
        """Which GPUs are metered and how."""
        self._setup()
        if not self._ready:
            return MeterProbe(False, "unmetered", self._reason)
        n = len(self._counter) + len(self._polled)
        return MeterProbe(True, self._method(), f"{n} visible GPU(s)")

    def prepare(self) -> None:
        """Initialize NVML and start the power poller where a device has no energy counter."""
        self._setup()
        if self._ready and self._polled and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="pcnbench-nvml", daemon=True)
            self._thread.start()

    def _power_w(self) -> float:
        nvml = self._nvml
        return sum(nvml.nvmlDeviceGetPowerUsage(h) for h in self._polled) / 1000.0

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                sample = (time.perf_counter(), self._power_w())
                with self._lock:
                    self._samples.append(sample)
            self._stop.wait(self.poll_interval_s)

    def start(self) -> Any:
        """Read the counters and note the time."""
        self.prepare()
        if not self._ready:
            return None
        counters = [self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._counter]
        if self._polled:
            with self._lock:
                self._samples.append((time.perf_counter(), self._power_w()))
        return (time.perf_counter(), counters)

    def stop(self, handle: Any) -> list[Reading]:
        """Energy of the window: counter difference (mJ) plus integrated polled power."""
        if handle is None:
            return _unmetered("gpu", self._reason)
        began, counters = handle
        joules = 0.0
        for h, before in zip(self._counter, counters, strict=True):
            joules += (self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) - before) / 1000.0
        if self._polled:
            now = time.perf_counter()
            with self._lock:
                self._samples.append((now, self._power_w()))
                window = [s for s in self._samples if began <= s[0] <= now]
            joules += sum(
                (t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(window)
            )
        return [Reading("gpu", joules, self._method())]

    def close(self) -> None:
        """Stop the poller."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


class _Zone:
    """One RAPL zone's counter, unwrapped into a monotonic total."""

    def __init__(self, path: Path, component: str) -> None:
        self.path = path
        self.component = component
        self.max_uj = int((path / "max_energy_range_uj").read_text())
        self._last = self._raw()
        self._total = 0

    def _raw(self) -> int:
        return int((self.path / "energy_uj").read_text())

    def read(self) -> int:
        """Microjoules since the zone was opened; counts one wrap between reads."""
        raw = self._raw()
        delta = raw - self._last
        if delta < 0:  # the counter wrapped at max_energy_range_uj
            delta += self.max_uj + 1
        self._last = raw
        self._total += delta
        return self._total


class RaplMeter(Meter):
    """CPU package and DRAM energy from Linux powercap RAPL counters.

    Package zones already include their core/uncore sub-zones, so only packages and DRAM are
    summed; psys is used only where there is no package zone. A background reader unwraps the
    counters often enough that long windows survive several wraparounds.
    """

    name = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap", interval_s: float = 5.0) -> None:
        self.root = Path(root)
        self.interval_s = interval_s
        self._zones: list[_Zone] | None = None
        self._reason = ""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _discover(self) -> None:
        if self._zones is not None or self._reason:
            return
        if not self.root.is_dir():
            self._reason = f"no RAPL ({self.root} absent)"
            return
        top = sorted(p for p in self.root.iterdir() if re.fullmatch(r"intel-rapl:\d+", p.name))
        if not top:
            self._reason = f"no RAPL zones under {self.root}"
            return
        chosen: list[tuple[Path, str]] = []
        psys: list[Path] = []
        for zone in top:
            name = (zone / "name").read_text().strip()
            if name.startswith("package"):
                chosen.append((zone, "cpu"))
                for sub in sorted(zone.iterdir()):
                    is_sub = re.fullmatch(r"intel-rapl:\d+:\d+", sub.name)
                    if is_sub and (sub / "name").read_text().strip() == "dram":
                        chosen.append((sub, "dram"))
            elif name == "dram":
                chosen.append((zone, "dram"))
            elif name == "psys":
                psys.append(zone)
        if not any(c == "cpu" for _, c in chosen):
            chosen += [(z, "cpu") for z in psys]
        try:
            self._zones = [_Zone(path, component) for path, component in chosen]
        except PermissionError:
            self._reason = (
                "RAPL not readable: permission denied (energy_uj is root-only on recent kernels)"
            )
        except (OSError, ValueError) as exc:
            self._reason = f"RAPL not readable: {exc}"
        if self._zones == []:
            self._zones, self._reason = None, "no package or DRAM RAPL zone"

    def probe(self) -> MeterProbe:
        """Which RAPL zones are read."""
        self._discover()
        if self._zones is None:
            return MeterProbe(False, "unmetered", self._reason)
        names = ", ".join(f"{z.path.name} ({z.component})" for z in self._zones)
        return MeterProbe(True, "rapl", names)

    def _read(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        with self._lock:
            for zone in self._zones or []:
                totals[zone.path.name] = zone.read()
        return totals

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(OSError):
                self._read()

    def prepare(self) -> None:
        """Find the zones and start the background unwrapper."""
        self._discover()
        if self._zones and self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="pcnbench-rapl", daemon=True)
            self._thread.start()

    def start(self) -> Any:
        """Read every zone."""
        self._discover()
        return self._read() if self._zones else None

    def stop(self, handle: Any) -> list[Reading]:
        """Joules per component (cpu, dram) over the window."""
        if handle is None:
            return _unmetered("cpu", self._reason) + _unmetered("dram", self._reason)
        end = self._read()
        joules: dict[str, float] = {}
        for zone in self._zones or []:
            used = (end[zone.path.name] - handle[zone.path.name]) / 1e6
            joules[zone.component] = joules.get(zone.component, 0.0) + used
        readings = [Reading(c, j, "rapl") for c, j in sorted(joules.items())]
        if "dram" not in joules:
            readings += _unmetered("dram", "no DRAM RAPL zone")
        return readings

    def close(self) -> None:
        """Stop the background reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


class CodecarbonMeter(Meter):
    """Whole-machine energy and CO2 *estimates* from codecarbon's offline tracker, quiet."""

    name = "codecarbon"
    # ~6 ms per tracker: one per cell; results get the cell's average estimated power × their
    # training time (pcnbench.metering.apportion_estimates)
    nested = False
    kinds = ("cell",)

    def __init__(self, country_iso_code: str | None = None) -> None:
        self.country = country_iso_code or os.environ.get("PCNBENCH_COUNTRY", "USA")
        self._module: Any = None
        self._reason = ""

    def configure(self, options: dict[str, Any]) -> None:
        """`country_iso_code` picks the electricity grid the CO2 estimate assumes."""
        self.country = str(options.get("country_iso_code", self.country))

    def _import(self) -> Any:
        if self._module is None and not self._reason:
            # must be set before codecarbon is imported, or it logs at info level
            os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
            try:
                self._module = importlib.import_module("codecarbon")
            except ImportError:
                self._reason = "codecarbon not installed"
        return self._module

    def _tracker(self) -> Any:
        return self._module.OfflineEmissionsTracker(
            country_iso_code=self.country,
            output_methods=[],
            emissions_endpoint=False,
            allow_multiple_runs=True,
            tracking_mode="machine",
            log_level="error",
        )

    def probe(self) -> MeterProbe:
        """Whether estimates are available, and for which country's grid."""
        if self._import() is None:
            return MeterProbe(False, "unmetered", self._reason)
        return MeterProbe(
            True, "codecarbon_estimate", f"codecarbon {self._module.__version__}, {self.country}"
        )

    @staticmethod
    def _prime_cpu_model() -> None:
        """Give codecarbon the CPU model from /proc/cpuinfo before it asks py-cpuinfo.

        py-cpuinfo spawns a subprocess (about 1.2 s) to find the same `model name` line;
        codecarbon caches the answer (lru_cache), so one fast call primes every later lookup.
        """
        try:
            import cpuinfo
            from codecarbon.core import util
        except ImportError:
            return
        detect = getattr(util, "detect_cpu_model", None)
        if detect is None or not hasattr(detect, "cache_info") or detect.cache_info().currsize:
            return
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
        except OSError:
            return
        name = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), ""
        )
        if not name:
            return
        real = cpuinfo.get_cpu_info
        cpuinfo.get_cpu_info = lambda: {"brand_raw": name}
        try:
            detect()
        finally:
            cpuinfo.get_cpu_info = real

    @staticmethod
    def _cache_physical_cpus() -> None:
        """Count physical CPUs once: codecarbon runs `lscpu` in a subprocess at every start."""
        from codecarbon import emissions_tracker

        count = getattr(emissions_tracker, "count_physical_cpus", None)
        if count is None or hasattr(count, "cache_info"):
            return
        emissions_tracker.count_physical_cpus = functools.lru_cache(maxsize=1)(count)

    def prepare(self) -> None:
        """Run codecarbon's one-time hardware detection on a throwaway tracker."""
        if self._import() is None:
            return
        with contextlib.suppress(Exception):
            self._prime_cpu_model()
        with contextlib.suppress(Exception):
            self._cache_physical_cpus()
        tracker = self._tracker()
        tracker.start()
        tracker.stop()

    def start(self) -> Any:
        """A new tracker per window (codecarbon trackers are not reusable)."""
        if self._import() is None:
            return None
        tracker = self._tracker()
        tracker.start()
        return tracker

    def stop(self, handle: Any) -> list[Reading]:
        """Estimated joules and kg CO2 of the window; codecarbon's None becomes unmetered."""
        if handle is None:
            return _unmetered("machine", self._reason, estimate=True)
        emissions = handle.stop()
        data = getattr(handle, "final_emissions_data", None)
        if emissions is None or data is None:
            return _unmetered("machine", "codecarbon returned no data", estimate=True)
        return [
            Reading(
                "machine",
                float(data.energy_consumed) * 3.6e6,
                "codecarbon_estimate",
                estimate=True,
                extra={"co2_kg": float(emissions)},
            )
        ]


class MemoryMeter(Meter):
    """Peak memory of a window: CUDA max allocated when CUDA is in use, else peak RSS (VmHWM)."""

    name = "memory"
    # a nested window (an evaluation inside training) lies within the outer one, whose peak
    # covers it: skipping it saves a /proc read per evaluation
    nested = False

    def __init__(self, proc: str | Path = "/proc/self") -> None:
        self.proc = Path(proc)
        self._depth = 0

    def _cuda(self) -> Any:
        torch = importlib.import_module("torch")
        return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def probe(self) -> MeterProbe:
        """How peaks are read."""
        cuda = self._cuda()
        if cuda is not None:
            return MeterProbe(True, "cuda_max_allocated", "torch.cuda.max_memory_allocated")
        ok = (self.proc / "status").exists()
        return MeterProbe(ok, "rss_peak" if ok else "unmetered", str(self.proc / "status"))

    def _reset(self) -> None:
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        else:
            # "5" resets this process's peak RSS (VmHWM); where not allowed, peaks are lifetime
            with contextlib.suppress(OSError):
                (self.proc / "clear_refs").write_text("5")

    def start(self) -> Any:
        """Reset the peak at the outermost window (nested windows see the outer's peak)."""
        if self._depth == 0:
            self._reset()
        self._depth += 1
        return None

    def stop(self, handle: Any) -> list[Reading]:
        """The peak since the outermost window opened."""
        self._depth = max(0, self._depth - 1)
        cuda = self._cuda()
        if cuda is not None:
            return [
                Reading(
                    "memory",
                    math.nan,
                    "cuda_max_allocated",
                    extra={"peak_mem_bytes": float(cuda.max_memory_allocated())},
                )
            ]
        try:
            for line in (self.proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kib = float(line.split()[1])
                    return [
                        Reading(
                            "memory", math.nan, "rss_peak", extra={"peak_mem_bytes": kib * 1024}
                        )
                    ]
        except OSError:
            pass
        return [Reading("memory", math.nan, "unmetered", note="no /proc/self/status")]


@hookimpl
def register_meters(register: Register) -> None:
    """Register the built-in meters."""
    for meter in (NvmlMeter(), RaplMeter(), CodecarbonMeter(), MemoryMeter()):
        register(meter)
