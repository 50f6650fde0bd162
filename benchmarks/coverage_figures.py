"""What each method reduces of three real architectures, and what it leaves dense: no training.

Run `python benchmarks/coverage_figures.py`. For torchvision's vit_b_16 (32×32 images, 10
classes), mobilenet_v3_small (10 classes) and MNIST-1D's ConvBase (Conv1d), prints per method
the whole model's params before → after (`count_params`), the share of the model's parameters
in tensors the method reduced, and the three largest tensors it left dense, with the reasons.

- magnitude: sparsity 0.8, one global |w| threshold, masks attached to the initial weights;
- lottery: the IMP masks of 7 levels at rate 0.2 (density 0.8⁷ ≈ 0.21), attached, no training
  (vit_b_16: one cut at the levels' summed count, which equals them without training);
- lowrank: ranks e0.9 and r0.5 on the default layers, with the input shape (attention's
  out_proj is not called as a module);
- pcn: keep f0.5 on 512 samples of randn as calibration data.

A method that fails on a model prints its error and the script goes on. A few minutes on CPU.
"""

from __future__ import annotations

import copy
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from pcnbench.api import Coverage
from pcnbench.counting import count_params
from pcnbench_plugins.lowrank import lowrank_coverage, lowrank_transform
from pcnbench_plugins.pruning import (
    attach_masks,
    ceil_prune_count,
    current_weights,
    global_magnitude_masks,
    imp_masks,
    magnitude_masks,
    prunable_weights,
    pruning_coverage,
)

SPARSITY = 0.8
IMP_LEVELS, IMP_RATE = 7, 0.2
IMP_CHECKED = 10_000_000  # prunable weights up to which IMP's levels also run one by one
LOWRANK_RANKS = ("e0.9", "r0.5")
PCN_KEEP = "f0.5"
PCN_SAMPLES, PCN_BATCH = 512, 128
LEFT_DENSE_SHOWN = 3

Reduce = Callable[[nn.Module, tuple[int, ...]], tuple[nn.Module, Coverage]]


@dataclass(frozen=True)
class Subject:
    """A model to reduce: its label, builder and one sample's input shape."""

    label: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


def conv_base() -> nn.Sequential:
    """MNIST-1D's ConvBase: three Conv1d (25 channels, lengths 40 → 19 → 10 → 5), a linear head."""
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(125, 10),
    )


SUBJECTS = (
    Subject(
        "vit_b_16 (32×32, 10 classes)",
        lambda: torchvision.models.vit_b_16(image_size=32, num_classes=10),
        (3, 32, 32),
    ),
    Subject(
        "mobilenet_v3_small (10 classes)",
        lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
        (3, 32, 32),
    ),
    Subject("MNIST-1D ConvBase (Conv1d)", conv_base, (1, 40)),
)


def magnitude(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, Coverage]:
    """Global magnitude masks at `SPARSITY` on a copy of `model`."""
    work = copy.deepcopy(model)
    layers = prunable_weights(work)
    attach_masks(layers, magnitude_masks(current_weights(layers), SPARSITY, "global"))
    return work, pruning_coverage(model, "magnitude")


def imp_count(total: int, levels: int = IMP_LEVELS, rate: float = IMP_RATE) -> int:
    """Weights `levels` IMP levels prune of `total`: ceil(rate × remaining) each (OpenLTH)."""
    pruned = 0
    for _ in range(levels):
        pruned += ceil_prune_count(total - pruned, rate)
    return pruned


def lottery(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, Coverage]:
    """The masks of `IMP_LEVELS` IMP levels at `IMP_RATE` on a copy of `model` (no retraining).

    Without training between levels the weights do not change, so the levels' masks are one
    global |w| cut at their summed count (ties by position either way): one sort instead of
    seven, which is a minute on vit_b_16. Below `IMP_CHECKED` weights the levels run one by
    one too, and must give the same masks.
    """
    work = copy.deepcopy(model)
    layers = prunable_weights(work)
    weights = current_weights(layers)
    total = sum(w.numel() for w in weights.values())
    masks = global_magnitude_masks(weights, imp_count(total))
    if total <= IMP_CHECKED:
        levels = None
        for _ in range(IMP_LEVELS):
            levels = imp_masks(weights, IMP_RATE, levels)
        assert levels is not None
        assert all(torch.equal(levels[key], mask) for key, mask in masks.items())
    attach_masks(layers, masks)
    return work, pruning_coverage(model, "lottery")


def lowrank(rank: str) -> Reduce:
    """Factorize the default layers at `rank`."""

    def reduce(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, Coverage]:
        result = lowrank_transform(model, rank, input_shape=input_shape)
        return result.model, lowrank_coverage(model, None, result)

    return reduce


def pcn(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, Coverage]:
    """PCN at `PCN_KEEP` calibrated on `PCN_SAMPLES` samples of randn."""
    from pcnbench_plugins.pcn.plan import account
    from pcnbench_plugins.pcn.transform import pcn_transform

    g = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(PCN_BATCH, *input_shape, generator=g) for _ in range(PCN_SAMPLES // PCN_BATCH)
    ]
    new, report = pcn_transform(model, batches, keep=PCN_KEEP)
    coverage = account(Coverage(model, "pcn"), model, report.layers, report.skipped)
    return new, coverage


METHODS: tuple[tuple[str, Reduce], ...] = (
    (f"magnitude s{SPARSITY} global", magnitude),
    (f"lottery {IMP_LEVELS}×{IMP_RATE} IMP", lottery),
    *((f"lowrank {rank}", lowrank(rank)) for rank in LOWRANK_RANKS),
    (f"pcn {PCN_KEEP}", pcn),
)


def left_dense_lines(coverage: Coverage, limit: int = LEFT_DENSE_SHOWN) -> list[str]:
    """The `limit` largest left-dense tensors, one line each, and how many more there are."""
    rows = coverage.left_dense()
    lines = [f"{row.name} ({row.params:,}): {row.reason}" for row in rows[:limit]]
    if len(rows) > limit:
        rest = sum(row.params for row in rows[limit:])
        lines.append(f"… {len(rows) - limit} more ({rest:,} params)")
    return lines


def report(subject: Subject) -> None:
    """Print every method's figures for one model."""
    torch.manual_seed(0)
    model = subject.build().eval()
    before = count_params(model)
    print(f"\n{subject.label}: {before:,} params, input {subject.input_shape}")
    for label, reduce in METHODS:
        started = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                reduced, coverage = reduce(model, subject.input_shape)
            after = count_params(reduced)
            del reduced
        except Exception as error:  # report it and go on with the next method
            last = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
            print(f"  {label:<24} FAILED ({type(error).__name__} at {where}): {error}")
            continue
        seconds = time.perf_counter() - started
        print(
            f"  {label:<24} params {before:,} → {after:,} ({after / before:.3f}×); "
            f"reduced {coverage.fraction:.1%} of the parameters  [{seconds:.1f} s]"
        )
        for line in left_dense_lines(coverage):
            print(f"      left dense: {line}")
        if caught:
            first = str(caught[0].message).splitlines()[0]
            print(f"      {len(caught)} warning(s), the first: {first[:150]}")


def main() -> None:
    """Every model, every method."""
    started = time.perf_counter()
    for subject in SUBJECTS:
        report(subject)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
