"""Whole-machine energy and CO2 estimates from codecarbon's offline tracker (labelled estimates)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from pathlib import Path
from typing import Any

from pcnbench.api import Meter, MeterProbe, Reading

from .common import unmetered

__all__ = ["CodecarbonMeter"]


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
            return unmetered("machine", self._reason, estimate=True)
        emissions = handle.stop()
        data = getattr(handle, "final_emissions_data", None)
        if emissions is None or data is None:
            return unmetered("machine", "codecarbon returned no data", estimate=True)
        return [
            Reading(
                "machine",
                float(data.energy_consumed) * 3.6e6,
                "codecarbon_estimate",
                estimate=True,
                extra={"co2_kg": float(emissions)},
            )
        ]
