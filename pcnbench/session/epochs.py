"""An epoch trained in pieces: the tally of its losses, and the message when they diverged.

An epoch may be trained in pieces (`train(until="Nit")` calls): its record covers all of them,
as long as they are contiguous (a restore elsewhere starts a new tally). The losses stay on
the device until the epoch ends, so the GPU is never waited for mid-epoch.
"""

from __future__ import annotations

import time

import torch

from pcnbench.state import EpochTally

__all__ = ["divergence", "tally_piece"]


def _first_nonfinite(losses: torch.Tensor, first: int, before: torch.Tensor | None) -> torch.Tensor:
    """(batch, 1 if inf else 0) of the first non-finite loss of an epoch, on the device.

    `losses` are those of batches `first`, `first` + 1, ... of the epoch; `before` is what the
    epoch's earlier pieces found, and wins when it names a batch. (-1, -1) when every loss is
    finite. Computed without reading anything back, so the GPU is never waited for.
    """
    bad = ~torch.isfinite(losses)
    index = bad.int().argmax()  # the first bad one; 0 when none is
    inf = losses.index_select(0, index.reshape(1)).squeeze(0).isinf().to(index.dtype)
    found = torch.stack((first + index, inf))
    found = torch.where(bad.any(), found, torch.full_like(found, -1))
    return found if before is None else torch.where(before[0] >= 0, before, found)


def tally_piece(
    tally: EpochTally | None,
    epoch: int,
    first: int,
    last: int,
    losses: list[torch.Tensor],
    started: float,
    device: torch.device,
) -> EpochTally:
    """The tally of `epoch` once batches `first:last` (their `losses`, from `started`) are in.

    `tally` is the one so far; a new one starts unless it is of `epoch` and ends at `first`.
    """
    if tally is None or tally.epoch != epoch or tally.next_batch != first:
        tally = EpochTally(epoch, first, torch.zeros((), device=device), 0, 0.0)
    if losses:
        stacked = torch.stack(losses)
        tally = EpochTally(
            epoch,
            last,
            tally.loss_sum + stacked.sum(),
            tally.batches + (last - first),
            tally.seconds + time.perf_counter() - started,
            _first_nonfinite(stacked, first, tally.nonfinite),
        )
    return tally


def divergence(tally: EpochTally, steps_per_epoch: int) -> str:
    """The message for an epoch whose loss sum is not finite."""
    batch, inf = tally.nonfinite.tolist() if tally.nonfinite is not None else (-1, 0)
    if batch < 0:  # every loss was finite; their sum overflowed
        return f"diverged: the epoch's summed loss overflowed at epoch {tally.epoch + 1}"
    step = tally.epoch * steps_per_epoch + batch + 1  # optimizer steps count from 1
    kind = "inf" if inf else "nan"
    return f"diverged: loss is {kind} at epoch {tally.epoch + 1}, step {step}"
