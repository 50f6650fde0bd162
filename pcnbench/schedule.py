"""The learning-rate schedule: a pure function of the optimizer step."""

from __future__ import annotations

import math

from pcnbench.recipe import Recipe

__all__ = ["lr_at", "warmup_steps"]


def warmup_steps(steps_per_epoch: int, recipe: Recipe) -> int:
    """Number of linear-warmup steps (at least one when any warmup is asked for)."""
    epochs = recipe.schedule.warmup_epochs
    return max(1, round(epochs * steps_per_epoch)) if epochs > 0 else 0


def lr_at(step: int, steps_per_epoch: int, recipe: Recipe) -> float:
    """Learning rate of optimizer step `step` (0-based) under `recipe`'s schedule."""
    lr = recipe.optimizer.lr
    schedule = recipe.schedule
    warmup = warmup_steps(steps_per_epoch, recipe)
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule.name == "multistep":
        passed = sum(1 for m in schedule.milestones if step >= m * steps_per_epoch)
        return lr * schedule.gamma**passed
    if schedule.name == "cosine":
        total = recipe.epochs * steps_per_epoch
        return 0.5 * lr * (1 + math.cos(math.pi * step / total))
    return lr
