"""GPU energy from NVML: the total-energy counter (Volta+), else integrated polled power."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import threading
import time
from collections import deque
from types import ModuleType
from typing import Any

from pcnbench.api import Meter, MeterProbe, Reading

from .common import unmetered

__all__ = ["NvmlMeter"]


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
            return unmetered("gpu", self._reason)
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
