"""Per-channel statistics the session normalizes with, computed from a training split."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of an (N, C, ...) tensor, as tuples of floats."""
    # Move channels first and flatten the rest, so one reduction covers every sample and position.
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    mean = per_channel.mean(dim=1)
    std = per_channel.std(dim=1, correction=0)
    return tuple(mean.tolist()), tuple(std.tolist())
