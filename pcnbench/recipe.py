"""The training recipe shared by every cell of a suite: optimizer, schedule, data handling."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Augmentation", "Optimizer", "Recipe", "Schedule", "check_speed_settings"]


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
    # Speed settings (README "Speed settings"): each changes the numbers a cell produces a
    # little, so a non-default value enters the cell id like any other recipe value.
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        "fp32",
        description="fp32: PyTorch's defaults; tf32: TF32 matmuls and convolutions on CUDA;"
        " bf16: training forwards and loss under bf16 autocast",
    )
    channels_last: bool = Field(
        False, description="model and 4-D input batches in channels_last memory format"
    )
    compile: Literal[False, "default", "reduce-overhead"] = Field(
        False,
        description="torch.compile the model for training steps; reduce-overhead adds CUDA graphs",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_mode(cls, value: Any) -> Any:
        # `compile: true` reads as torch.compile's default mode (and gives the same cell id)
        if value is True:
            return "default"
        if value is False or value in ("default", "reduce-overhead"):
            return value
        raise ValueError(f"must be false, default or reduce-overhead (got {value!r})")

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


def check_speed_settings(recipe: Recipe, device: Any) -> None:
    """Raise PcnbenchError when `recipe`'s speed settings cannot run on `device` (a torch device).

    Called where the device is known (a session is built for it); the message names the key.
    """
    import shutil
    import warnings

    import torch

    from pcnbench.errors import PcnbenchError

    device = torch.device(device)
    kind = device.type
    if recipe.precision == "bf16":
        supported = torch.amp.is_autocast_available(kind)
        if supported and kind == "cuda":
            # natively: emulated bf16 (GPUs before Ampere) is slower than fp32
            supported = torch.cuda.is_bf16_supported(including_emulation=False)
        elif supported:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unsupported dtype warns and disables
                supported = getattr(torch.autocast(kind, dtype=torch.bfloat16), "_enabled", True)
        if not supported:
            raise PcnbenchError(
                f"recipe.precision: bf16 is not supported on device '{device}' (no native bf16"
                " autocast there); use precision: fp32"
            )
    if recipe.compile is False:
        return
    if recipe.compile == "reduce-overhead" and kind != "cuda":
        raise PcnbenchError(
            f"recipe.compile: reduce-overhead captures CUDA graphs and needs a CUDA device; this"
            f" cell runs on '{device}'; use compile: default (or false)"
        )
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        raise PcnbenchError(
            "recipe.compile: torch.compile is not supported with this Python and PyTorch"
            f" (torch {torch.__version__}); set compile: false"
        )
    if kind == "cpu":
        compiler = next(
            (c for c in (os.environ.get("CXX"), "g++", "clang++", "c++") if c and shutil.which(c)),
            None,
        )
        if compiler is None:
            raise PcnbenchError(
                "recipe.compile: torch.compile on the CPU needs a C++ compiler (g++ or clang++,"
                " or one named by $CXX) and none was found; install one or set compile: false"
            )
