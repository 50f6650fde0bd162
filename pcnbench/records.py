"""What a cell's training leaves behind: one record per epoch and one per metered phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pcnbench.contracts import Reading
from pcnbench.metering import reading_columns

__all__ = ["EpochRecord", "PhaseRecord"]


@dataclass(frozen=True)
class EpochRecord:
    """One completed training epoch; evaluation fields are None when it was not evaluated."""

    phase: str
    epoch: int  # epochs completed, 1-based
    step: int  # optimizer steps completed
    train_loss: float  # mean over the epoch's batches (all pieces of it)
    test_accuracy: float | None
    test_loss: float | None
    val_accuracy: float | None
    lr: float  # learning rate of the epoch's last step
    seconds: float  # wall time of the epoch's training, evaluation excluded


@dataclass(frozen=True)
class PhaseRecord:
    """One named, metered stretch of a method's run (only outermost phases are recorded)."""

    name: str
    kind: str  # "train", "eval" or anything a method chooses, e.g. "transform"
    wall_s: float
    cpu_s: float
    start_step: int
    end_step: int
    readings: list[Reading] = field(default_factory=list)  # meters' figures for the window
    reused: bool = False  # restored from the shared trunk: figures are those of its training
    # seconds of this phase done by an interrupted run before a resume (in wall_s, unmetered)
    resumed_s: float = 0.0

    def as_row(self) -> dict[str, Any]:
        """Flat columns for the phases table (meter readings spread into named columns)."""
        row = {k: getattr(self, k) for k in ("name", "kind", "wall_s", "cpu_s")}
        row.update(start_step=self.start_step, end_step=self.end_step, reused=self.reused)
        row.update(resumed_s=self.resumed_s)
        row.update(reading_columns(self.readings))
        return row
