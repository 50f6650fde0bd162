"""Peak memory of a window: CUDA max allocated when CUDA is in use, else peak RSS (VmHWM)."""

from __future__ import annotations

import contextlib
import importlib
import math
from pathlib import Path
from typing import Any

from pcnbench.api import Meter, MeterProbe, Reading

__all__ = ["MemoryMeter"]


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
