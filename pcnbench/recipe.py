"""The training recipe shared by every cell of a suite: optimizer, schedule, data handling."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Optimizer(_Strict):
    """Optimizer settings; weight decay lives on the recipe."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)


class Schedule(_Strict):
    """Learning-rate schedule as a pure function of the step (epochs may be fractional)."""

    name: Literal["constant", "multistep", "cosine"] = "multistep"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)
    warmup_epochs: float = Field(0.0, ge=0)


class Augmentation(_Strict):
    """Batch-level augmentation of in-memory image data (done on the training device)."""

    crop_padding: int = Field(0, ge=0)
    flip: bool = False


class Recipe(_Strict):
    """One training recipe; every cell of a suite trains with it."""

    epochs: int = Field(gt=0)
    batch_size: int = Field(128, gt=0)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = Field(default_factory=Schedule)
    augmentation: Augmentation = Field(default_factory=Augmentation)
    eval_every: int = Field(1, ge=0, description="evaluate every N epochs; 0 = only at the end")
    validation_split: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _milestones_within_training(self) -> Recipe:
        for m in self.schedule.milestones:
            if not 0 < m <= self.epochs:
                raise ValueError(
                    f"schedule.milestones: each must be in 1..epochs={self.epochs} (got {m})"
                )
        if self.schedule.milestones != sorted(self.schedule.milestones):
            raise ValueError("schedule.milestones: must be increasing")
        return self
