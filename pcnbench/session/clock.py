"""What the session's work costs: the steps it took, its metered phases and their times.

The metering itself is `pcnbench.phases.PhaseClock`'s; this part is what a method sees of it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pcnbench.phases import PhaseClock
    from pcnbench.records import PhaseRecord

__all__ = ["PhaseMetering"]


class PhaseMetering:
    """The session's part that meters its work (a mixin of `pcnbench.session.Session`)."""

    steps_per_epoch: int
    _steps_trained: int  # counted by the training loop
    _clock: PhaseClock

    @property
    def steps_trained(self) -> int:
        """All optimizer steps this session has taken, restores included (never decreases)."""
        return self._steps_trained

    @property
    def phases(self) -> list[PhaseRecord]:
        """The recorded phases, in the order they ended."""
        return self._clock.records

    def phase(self, name: str, kind: str = "other") -> AbstractContextManager[None]:
        """Meter a named stretch of work.

        A phase inside another is part of the outer one, except evaluation: an "eval" phase
        nested in, say, training is recorded on its own and its time is taken out of the outer
        phase, so `train_time_s` counts training alone.
        """
        return self._clock.phase(name, kind)

    @property
    def train_time_s(self) -> float:
        """Wall seconds of all recorded phases of kind "train" (evaluation excluded).

        Trunk segments restored from the cache count with the time they took to train, so this
        is the cell's training time as if it had run alone; see `incurred_time_s`.
        """
        return self._wall_s("train")

    @property
    def incurred_time_s(self) -> float:
        """Wall seconds this session actually spent training (reused trunk segments excluded)."""
        return sum(p.wall_s for p in self.phases if p.kind == "train" and not p.reused)

    @property
    def epochs_trained(self) -> float:
        """`steps_trained` in epochs: the training a method is charged for."""
        return self._steps_trained / self.steps_per_epoch

    def _wall_s(self, kind: str) -> float:
        """Wall seconds of all recorded phases of `kind`."""
        return sum(p.wall_s for p in self.phases if p.kind == kind)
