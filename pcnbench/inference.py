"""Measured inference speed of a model, timed interleaved with its dense parent.

Absolute timings on a shared or loaded machine say more about the machine than the model: a
forward that takes 0.4 ms idle can take 400 ms while other processes hold the cores. Timing the
reduced model and the dense model it came from alternately, pair by pair in the same window,
exposes both to the same conditions. Forwards run in ABBA blocks (dense, reduced, reduced,
dense), so that going first or second and any drift within a block cancel out; the median of
the blocks' ratios (reduced / dense) is what the measurement stands on, and its interval says
whether it stands.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from pcnbench.modes import eval_mode

__all__ = ["NOISY_TOLERANCE", "measure_inference", "median_interval", "noisy", "thread_bound"]

# A ratio is flagged noisy when its 95% interval reaches more than 10% beyond it on either
# side (interval end / ratio > 1.10 or ratio / interval start > 1.10): the measurement cannot
# tell it from a ratio 10% away.
NOISY_TOLERANCE = 0.10
CONFIDENCE = 0.95
WARMUP = 2  # forwards of each model before timing
LATENCY_BLOCKS = (11, 101)  # ABBA blocks at batch 1: at least, at most
THROUGHPUT_BLOCKS = (6, 26)  # ABBA blocks at the recipe's batch size: at least, at most
FEWEST_BLOCKS = 3  # a very slow forward stops at this many blocks once far over budget
OVER_BUDGET = 8  # ... "far over budget": this many times the time budget
# Threads waiting for cores: where other processes hold the cores, a forward at several
# threads waits for its threads to be scheduled (400 ms against 0.36 ms at one thread on a
# loaded 2-core machine) and takes about the same time whatever its work, so even paired
# ratios crowd towards 1. Where the configured threads are THREAD_BOUND times slower than one
# thread in SLOW_PROBES of at most PROBES probe pairs, the blocks run at one thread instead, and
# `inference_threads` says so.
THREAD_BOUND = 1.5
PROBES = 11
SLOW_PROBES = 3

# Pair measurements already made in this process, by what decides them: masked networks run
# the same dense kernels as their unmasked architecture, so one measurement serves them all.
_MEASURED: dict[tuple[Any, ...], dict[str, Any]] = {}


def _clock() -> float:
    return time.perf_counter()


def _timed(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Seconds of one forward of `model` on `x`, the device synchronized around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = _clock()
    model(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return _clock() - start


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval of the median: order statistics at binomial(n, ½) ranks.

    With too few values for `confidence` (n < 6 at 95%) it is the whole range.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan, math.nan
    tail = Fraction(1.0 - confidence).limit_denominator(10**6) / 2
    # the largest j with P(Binomial(n, ½) ≤ j - 1) ≤ tail: [x_(j), x_(n-j+1)] covers the median
    # (exact integer arithmetic: 2**n overflows a float beyond n = 1023)
    j, below, total = 0, 0, 2**n
    while True:
        below += math.comb(n, j)
        if below > tail * total:
            break
        j += 1
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


def noisy(ratio: float, low: float, high: float, tolerance: float = NOISY_TOLERANCE) -> bool:
    """Whether the interval [low, high] is too wide to support `ratio` (beyond ± `tolerance`)."""
    if not all(math.isfinite(v) and v > 0 for v in (ratio, low, high)):
        return True
    return high / ratio > 1.0 + tolerance or ratio / low > 1.0 + tolerance


def thread_bound(dense: nn.Module, x: torch.Tensor, device: torch.device) -> bool:
    """Whether the configured torch threads wait for cores (an oversubscribed machine).

    CPU forwards of `dense` on `x`, alternately at those threads and at one: bound when
    SLOW_PROBES of at most PROBES pairs are THREAD_BOUND times slower with the threads.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        return False
    slow = 0
    try:
        _timed(dense, x, device)
        for _ in range(PROBES):
            torch.set_num_threads(threads)
            many = _timed(dense, x, device)
            torch.set_num_threads(1)
            one = _timed(dense, x, device)
            slow += many > THREAD_BOUND * one
            if slow >= SLOW_PROBES:
                return True
    finally:
        torch.set_num_threads(threads)
    return False


def _paired(
    dense: nn.Module,
    model: nn.Module,
    inputs: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    budget_s: float,
    blocks: tuple[int, int],
) -> tuple[list[float], list[float]]:
    """Seconds per forward of `dense` and `model`, timed in ABBA blocks: D R R D, D R R D, ...

    Both models sit at the same mean position in every block, so a constant advantage of one
    position and a linear drift cancel out of the block's ratio. Stops at the most blocks, or
    at the least once `budget_s` is spent, or (a very slow forward) at FEWEST_BLOCKS once
    OVER_BUDGET times the budget is spent. Forward 2k and 2k+1 of each list form block k.
    """
    x_dense, x_model = inputs
    for _ in range(WARMUP):
        _timed(dense, x_dense, device)
        _timed(model, x_model, device)
    least, most = blocks
    dense_s: list[float] = []
    model_s: list[float] = []
    began = _clock()
    while len(dense_s) < 2 * most:
        spent = _clock() - began
        n = len(dense_s) // 2
        if n >= least and spent >= budget_s:
            break
        if n >= FEWEST_BLOCKS and spent >= OVER_BUDGET * budget_s:
            break
        dense_s.append(_timed(dense, x_dense, device))
        model_s.append(_timed(model, x_model, device))
        model_s.append(_timed(model, x_model, device))
        dense_s.append(_timed(dense, x_dense, device))
    return dense_s, model_s


def _block_ratios(top: list[float], bottom: list[float]) -> list[float]:
    """Per ABBA block: the sum of `top`'s two forwards over the sum of `bottom`'s two."""
    return [(top[i] + top[i + 1]) / (bottom[i] + bottom[i + 1]) for i in range(0, len(top), 2)]


def _architecture(model: nn.Module) -> tuple[Any, ...]:
    """What decides the kernels a forward runs: modules as printed and parameter shapes."""
    return (
        repr(model),
        tuple((name, tuple(p.shape), p.dtype) for name, p in model.named_parameters()),
    )


def _input(model: nn.Module, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    reference = next(iter(model.parameters()), None)
    dtype = reference.dtype if reference is not None else torch.float32
    # a private generator: measuring must not move the session's random state
    gen = torch.Generator(device=device).manual_seed(0)
    return torch.randn(*shape, device=device, dtype=dtype, generator=gen)


@torch.no_grad()
def measure_inference(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    device: torch.device | str,
    dense: nn.Module,
    budget_s: float = 0.05,
) -> dict[str, Any]:
    """Latency and throughput of `model`, timed interleaved with its dense parent `dense`.

    Columns: `latency_ms` and `dense_latency_ms` (medians at batch 1, same window),
    `latency_ratio` (median of the ABBA blocks' model/dense ratios) with its 95% interval
    `latency_ratio_low`–`latency_ratio_high` and `latency_noisy` (see `noisy`);
    `throughput_sps`, `dense_throughput_sps` and `throughput_ratio` (median of the blocks'
    dense/model batch times: model throughput relative to dense) at `batch_size`;
    `latency_blocks`; `inference_threads` (the torch threads it ran at: 1 where the configured
    threads wait for cores, see `thread_bound`); `inference_method`.

    Pairs whose architectures (modules and parameter shapes), device, threads and batch size
    were measured before in this process get those figures, labelled so: masks and weight
    values do not change what dense kernels do.
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    key = (
        _architecture(dense),
        _architecture(model),
        tuple(input_shape),
        batch_size,
        str(device),
        threads,
    )
    if key in _MEASURED:
        earlier = dict(_MEASURED[key])
        earlier["inference_method"] += (
            " (the figures of an earlier result with these architectures)"
        )
        return earlier
    try:
        with eval_mode(model, dense):
            ones = tuple(_input(net, (1, *input_shape), device) for net in (dense, model))
            batches = tuple(
                _input(net, (batch_size, *input_shape), device) for net in (dense, model)
            )
            # the batch engages the threads the most: where they wait for cores, time at one
            if thread_bound(dense, batches[0], device):
                torch.set_num_threads(1)
            used = torch.get_num_threads()
            dense_1, model_1 = _paired(dense, model, ones, device, budget_s, LATENCY_BLOCKS)
            dense_b, model_b = _paired(dense, model, batches, device, budget_s, THROUGHPUT_BLOCKS)
    finally:
        torch.set_num_threads(threads)
    ratios = _block_ratios(model_1, dense_1)
    ratio = statistics.median(ratios)
    low, high = median_interval(ratios)
    figures = _MEASURED[key] = {
        "latency_ms": statistics.median(model_1) * 1e3,
        "dense_latency_ms": statistics.median(dense_1) * 1e3,
        "latency_ratio": ratio,
        "latency_ratio_low": low,
        "latency_ratio_high": high,
        "latency_noisy": noisy(ratio, low, high),
        "latency_blocks": len(ratios),
        "throughput_sps": batch_size / statistics.median(model_b),
        "dense_throughput_sps": batch_size / statistics.median(dense_b),
        "throughput_ratio": statistics.median(_block_ratios(dense_b, model_b)),
        "inference_threads": used,
        "inference_method": (
            f"measured on {device.type}, interleaved with the dense model in ABBA blocks at "
            f"batch 1 and {batch_size} after {WARMUP} warm-up forwards each, device "
            f"synchronized, at 1 thread where more made dense {THREAD_BOUND:g}× slower "
            f"(inference_threads); latency_ratio: median of the blocks' ratios, "
            f"{CONFIDENCE:.0%} interval by order statistics"
        ),
    }
    return dict(figures)
