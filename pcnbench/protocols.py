"""The session a method drives, as a protocol: every attribute and call a method plugin may use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pcnbench.recipe import Recipe

__all__ = ["Session", "Snapshot"]


class Snapshot(Protocol):
    """A saved point of training (model, optimizer state, step, RNG): hand it to `restore`."""

    @property
    def step(self) -> int:
        """The optimizer step the snapshot was taken at."""
        ...


class Session(Protocol):
    """What `Method.run` drives: one cell's model, its optimizer, schedule, data and results.

    The learning-rate schedule and the data order are functions of the optimizer step, so
    training in pieces, replacing the model or restoring a snapshot all continue exactly
    where they are. Everything else a method needs (masks, layer selection, errors) is in
    `pcnbench.api`.
    """

    recipe: Recipe  # the suite's training recipe (epochs, batch size, optimizer, schedule)
    seed: int  # the cell's seed; the global torch, NumPy and Python RNGs start from it
    device: torch.device  # where the model and batches live
    input_shape: tuple[int, ...]  # one sample's shape, e.g. (3, 32, 32)
    steps_per_epoch: int  # optimizer steps in one epoch of the recipe
    total_steps: int  # the step training ends at (grows with `finetune`)
    recipe_steps: int  # the recipe's own end: recipe.epochs × steps_per_epoch
    dense_params: int  # parameters of the model the cell started with
    dense_macs: int  # its multiply-accumulates per sample

    @property
    def model(self) -> nn.Module:
        """The network being trained; assigning a new one builds a fresh optimizer for it."""
        ...

    @model.setter
    def model(self, model: nn.Module) -> None: ...

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of the current model (rebuilt whenever the model is replaced)."""
        ...

    @property
    def step(self) -> int:
        """Optimizer steps done on the current schedule position."""
        ...

    @property
    def epoch(self) -> float:
        """The schedule position in (fractional) epochs."""
        ...

    @property
    def steps_trained(self) -> int:
        """Every optimizer step this session took, restores included (never decreases)."""
        ...

    @property
    def epochs_trained(self) -> float:
        """`steps_trained` in epochs: the training the method is charged for."""
        ...

    @property
    def train_time_s(self) -> float:
        """Wall seconds of training so far (evaluation excluded), as if the cell ran alone."""
        ...

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (the recipe's, then any fine-tuning's)."""
        ...

    def train(self, until: int | str = "end", phase: str = "train") -> None:
        """Train from the current step to `until`: epochs (5, "5ep"), steps ("500it") or "end"."""
        ...

    def finetune(self, epochs: int, lr: float | str = "rewind", phase: str = "finetune") -> None:
        """Train `epochs` more epochs past the recipe's end at a fixed `lr` or "rewind"."""
        ...

    def add_step_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook()` after every optimizer step (e.g. to re-apply masks); kept for good."""
        ...

    def phase(self, name: str, kind: str = "other") -> AbstractContextManager[None]:
        """Meter a named stretch of work (kind "transform" for a method's own computation)."""
        ...

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Top-1 accuracy (0–1) and mean cross-entropy of the current model on a split."""
        ...

    def snapshot(self) -> Snapshot:
        """Save model, optimizer state, step and RNG states to `restore` later (reusable)."""
        ...

    def restore(self, snapshot: Snapshot) -> None:
        """Go back to `snapshot`; the schedule and data order continue from its step."""
        ...

    def calibration_batches(
        self, n: int = 5000, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Inputs of `n` unaugmented, normalized training samples in an order fixed by the seed."""
        ...

    def record(self, **extra: Any) -> dict[str, Any]:
        """Evaluate and count the current model and store a result row; `extra` adds columns."""
        ...
