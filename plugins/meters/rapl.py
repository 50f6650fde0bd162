"""CPU package and DRAM energy from Linux powercap RAPL counters, unwrapped in the background."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any

from pcnbench.api import Meter, MeterProbe, Reading

from .common import unmetered

__all__ = ["RaplMeter"]


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
            return unmetered("cpu", self._reason) + unmetered("dram", self._reason)
        end = self._read()
        joules: dict[str, float] = {}
        for zone in self._zones or []:
            used = (end[zone.path.name] - handle[zone.path.name]) / 1e6
            joules[zone.component] = joules.get(zone.component, 0.0) + used
        readings = [Reading(c, j, "rapl") for c, j in sorted(joules.items())]
        if "dram" not in joules:
            readings += unmetered("dram", "no DRAM RAPL zone")
        return readings

    def close(self) -> None:
        """Stop the background reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
