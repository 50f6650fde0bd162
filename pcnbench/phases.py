"""Phase metering: wall and CPU seconds and meter readings of named stretches of a session's work.

Only outermost phases are recorded, with one exception: an evaluation nested in another phase
is recorded on its own and its seconds and readings are carved out of the outer phase, so
training time counts training alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pcnbench.contracts import Reading
from pcnbench.metering import MeterSet, scale_estimates, subtract
from pcnbench.records import PhaseRecord

__all__ = ["Elapsed", "PhaseClock"]


@dataclass(frozen=True)
class Elapsed:
    """How far the open outermost phase got: its seconds (evaluation carved out), first step."""

    wall_s: float
    cpu_s: float
    start_step: int


@dataclass
class _Frame:
    """Clock readings at the start of the outermost open phase (shifted on a resume)."""

    wall: float
    cpu: float
    carved: tuple[float, float]
    carved_readings: int
    start_step: int
    metered_from: float  # when the meters' window opened (never shifted)
    resumed_s: float = 0.0  # seconds credited from an interrupted run


class PhaseClock:
    """Meters a session's phases into `records`; `steps()` tells the steps trained so far."""

    def __init__(self, meters: MeterSet, device: torch.device, steps: Callable[[], int]) -> None:
        self.records: list[PhaseRecord] = []
        self._meters = meters
        self._device = device
        self._steps = steps
        self._depth = 0
        self._outer: _Frame | None = None
        # wall and CPU seconds, and meter readings, of evaluations nested in other phases
        self._carved = (0.0, 0.0)
        self._carved_readings: list[list[Reading]] = []

    @property
    def open(self) -> bool:
        """Whether a phase is open."""
        return self._depth > 0

    def sync(self) -> None:
        """Wait for the device's queued work, so clock readings cover it."""
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    @contextmanager
    def phase(self, name: str, kind: str = "other") -> Iterator[None]:
        """Meter a named stretch of work (see `Session.phase`)."""
        self._depth += 1
        nested = self._depth > 1
        if nested and kind != "eval":
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.sync()
        handles = self._meters.start(nested=nested, kind=kind) if self._meters else []
        now = time.perf_counter()
        frame = _Frame(
            now,
            time.process_time(),
            self._carved,
            len(self._carved_readings),
            self._steps(),
            metered_from=now,
        )
        if not nested:
            self._outer = frame
        try:
            yield
        finally:
            self._depth -= 1
            self.sync()
            now = time.perf_counter()
            wall_s = now - frame.wall
            cpu_s = time.process_time() - frame.cpu
            metered_s = now - frame.metered_from  # the meters' window (a resume shifts `wall`)
            readings = self._meters.stop(handles, metered_s) if self._meters else []
            if nested:
                self._carved = (self._carved[0] + wall_s, self._carved[1] + cpu_s)
                self._carved_readings.append(readings)
            else:
                self._outer = None
                carved_wall = self._carved[0] - frame.carved[0]
                wall_s -= carved_wall
                cpu_s -= self._carved[1] - frame.carved[1]
                carved_readings = frame.carved_readings
                for inner in self._carved_readings[carved_readings:]:
                    readings = subtract(readings, inner)
                if self._carved_readings[carved_readings:] and metered_s > 0:
                    readings = scale_estimates(readings, max(0.0, 1 - carved_wall / metered_s))
                del self._carved_readings[carved_readings:]
            self.records.append(
                PhaseRecord(
                    name=name,
                    kind=kind,
                    wall_s=wall_s,
                    cpu_s=cpu_s,
                    start_step=frame.start_step,
                    end_step=self._steps(),
                    readings=readings,
                    resumed_s=frame.resumed_s,
                )
            )

    def elapsed(self) -> Elapsed | None:
        """How far the open outermost phase got (None when no phase is open)."""
        frame = self._outer
        if frame is None:
            return None
        return Elapsed(
            time.perf_counter() - frame.wall - (self._carved[0] - frame.carved[0]),
            time.process_time() - frame.cpu - (self._carved[1] - frame.carved[1]),
            frame.start_step,
        )

    def resume(self, elapsed: Elapsed) -> None:
        """Count `elapsed`, from an interrupted run, into the open outermost phase.

        Its seconds go into the phase's `wall_s` (and `resumed_s`) but not into the meters'
        window, which only covers this run.
        """
        frame = self._outer
        if frame is None:
            return
        frame.resumed_s = elapsed.wall_s
        frame.wall = time.perf_counter() - elapsed.wall_s
        frame.cpu = time.process_time() - elapsed.cpu_s
        frame.carved, frame.carved_readings = self._carved, len(self._carved_readings)
        frame.start_step = elapsed.start_step
