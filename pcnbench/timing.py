"""Seconds per training epoch of a (dataset, model) grid point, measured on this machine.

The GPU-hours projection under `pcnbench run --dry-run` needs how long one epoch of each grid
point takes here. Training the real data for an epoch would cost what the projection is meant
to save, so this trains the grid point's model (built by its plugin, with the suite's recipe
and speed settings) on random inputs of the dataset's shape for a few steps, after as many
steps of warm-up (kernel selection, compilation), timed around the whole stretch with the
device synchronized at both ends, and scales the seconds per step to the dataset's epoch.
What it leaves out: data loading (in-memory datasets are augmented on the device, so little;
folder datasets decode images on CPU workers, which may be the real bottleneck), evaluation,
and what a method does beyond training steps (PCA calibration, transforms).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from pcnbench.cells import Cell
from pcnbench.errors import PcnbenchError

__all__ = ["EpochTiming", "measure_epoch_seconds", "train_size"]


@dataclass(frozen=True)
class EpochTiming:
    """One grid point's measured epoch: seconds, and what they were scaled from."""

    seconds: float  # one training epoch of the real dataset, projected
    step_s: float  # seconds per optimizer step measured
    steps_per_epoch: int  # of the real dataset at the recipe's batch size
    steps_timed: int


def measure_epoch_seconds(
    cell: Cell, host: Any, device: str, steps: int = 10, samples: int | None = None
) -> EpochTiming:
    """Time `steps` training steps of `cell`'s model on `device` (after `steps` of warm-up).

    `samples` is the dataset's training size (`train_size`), loaded here when not given.
    """
    import torch

    from pcnbench.contracts import TensorSplits
    from pcnbench.recipe import Schedule
    from pcnbench.session import Session

    dataset = host.datasets.get(cell.dataset.name)
    info = dataset.info(cell.dataset.params)
    samples = train_size(cell, host) if samples is None else samples
    recipe = cell.recipe
    steps_per_epoch = math.ceil(
        (samples - round(samples * recipe.validation_split)) / recipe.batch_size
    )
    model = host.models.get(cell.model.name).build(cell.model.params, info)
    # two "epochs" of random data, `steps` full batches each: the first warms up, the second is
    # timed; no evaluation, no schedule (only the step's cost matters)
    n = recipe.batch_size * steps
    generator = torch.Generator().manual_seed(0)
    channels = info.input_shape[0] if len(info.input_shape) == 3 else 1
    splits = TensorSplits(
        x_train=torch.rand(n, *info.input_shape, generator=generator),
        y_train=torch.randint(info.num_classes, (n,), generator=generator),
        x_test=torch.rand(2, *info.input_shape, generator=generator),
        y_test=torch.randint(info.num_classes, (2,), generator=generator),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
    )
    short = recipe.model_copy(
        update={"epochs": 2, "eval_every": 0, "validation_split": 0.0, "schedule": Schedule()}
    )
    session = Session(model, splits, short, seed=cell.seed, device=device, measure_inference=False)
    session.train(until=1)  # warm-up
    _sync(session.device)
    start = time.perf_counter()
    session.train(until=2)
    _sync(session.device)
    step_s = (time.perf_counter() - start) / steps
    return EpochTiming(step_s * steps_per_epoch, step_s, steps_per_epoch, steps)


def train_size(cell: Cell, host: Any) -> int:
    """The training samples of the cell's dataset (loaded: the plugins do not say otherwise)."""
    try:
        data = host.datasets.get(cell.dataset.name).load(cell.dataset.params)
    except PcnbenchError as exc:
        raise PcnbenchError(
            f"cannot project the run's time: dataset '{cell.dataset.name}' is needed for its "
            f"size and could not be loaded: {exc}"
        ) from None
    x_train = getattr(data, "x_train", None)
    return len(x_train) if x_train is not None else len(data.train)


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)
