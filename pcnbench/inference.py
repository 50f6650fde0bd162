"""Measured inference speed of a model as it runs (masked layers run dense kernels)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["measure_inference"]

# Figures already measured in this process, by what decides them: masked networks run the
# same dense kernels as their unmasked architecture, so one measurement serves them all.
_MEASURED: dict[tuple[Any, ...], dict[str, Any]] = {}


def _timed(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    model(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _median_seconds(
    model: nn.Module, x: torch.Tensor, device: torch.device, budget_s: float
) -> tuple[float, int]:
    warm = time.perf_counter()
    for _ in range(2):
        _timed(model, x, device)
        if time.perf_counter() - warm > budget_s:
            break
    times: list[float] = []
    began = time.perf_counter()
    # at least 5 repeats, at most 11, stopping early once the time budget is spent
    while len(times) < 11 and (len(times) < 5 or time.perf_counter() - began < budget_s):
        times.append(_timed(model, x, device))
    return statistics.median(times), len(times)


@torch.no_grad()
def measure_inference(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    device: torch.device | str,
    budget_s: float = 0.25,
) -> dict[str, Any]:
    """Latency at batch 1 (ms) and throughput at `batch_size` (samples/s), medians of repeats.

    Each measurement warms up first and synchronizes the device around every timed forward.
    A network whose architecture (its modules as printed and its parameter shapes), device,
    thread count and batch size were measured before in this process gets those figures,
    labelled so: pruning masks and weight values do not change what dense kernels do.
    """
    device = torch.device(device)
    key = (
        repr(model),
        tuple((name, tuple(p.shape), p.dtype) for name, p in model.named_parameters()),
        tuple(input_shape),
        batch_size,
        str(device),
        torch.get_num_threads(),
    )
    if key in _MEASURED:
        earlier = dict(_MEASURED[key])
        earlier["inference_method"] += " (the figures of an earlier result with this architecture)"
        return earlier
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        reference = next(iter(model.parameters()), None)
        dtype = reference.dtype if reference is not None else torch.float32
        # a private generator: measuring must not move the session's random state
        gen = torch.Generator(device=device).manual_seed(0)
        one = torch.randn(1, *input_shape, device=device, dtype=dtype, generator=gen)
        batch = torch.randn(batch_size, *input_shape, device=device, dtype=dtype, generator=gen)
        latency, n1 = _median_seconds(model, one, device, budget_s)
        per_batch, nb = _median_seconds(model, batch, device, budget_s)
    finally:
        for module, training in modes:
            module.training = training
    figures = _MEASURED[key] = {
        "latency_ms": latency * 1e3,
        "throughput_sps": batch_size / per_batch,
        "inference_method": (
            f"measured on {device.type}: median of {n1} forwards at batch 1 and {nb} at batch "
            f"{batch_size}, after 2 warm-up forwards each, device synchronized"
        ),
    }
    return dict(figures)
