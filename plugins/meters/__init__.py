"""Built-in meters: GPU energy (NVML), CPU/DRAM energy (RAPL), codecarbon estimates, peak memory.

Every meter degrades to an "unmetered" reading with the reason when its hardware or library is
missing: a figure is either measured, estimated (and labelled so), or NaN with why.
"""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl

from .codecarbon import CodecarbonMeter
from .memory import MemoryMeter
from .nvml import NvmlMeter
from .rapl import RaplMeter

__all__ = ["CodecarbonMeter", "MemoryMeter", "NvmlMeter", "RaplMeter"]


@hookimpl
def register_meters(register: Register) -> None:
    """Register the built-in meters."""
    for meter in (NvmlMeter(), RaplMeter(), CodecarbonMeter(), MemoryMeter()):
        register(meter)
