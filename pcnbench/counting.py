"""Parameter and multiply-accumulate counts of a network as it runs at inference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pcnbench.masks import masked_parameters

__all__ = ["count_macs", "count_params", "counted_tensors"]

# Training-only state of normalization layers: not needed once the statistics are folded in.
_RUNNING_STATS = frozenset({"running_mean", "running_var", "num_batches_tracked"})


def counted_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer `count_params` counts, by qualified name (shared ones once)."""
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    for name, buffer in model.named_buffers():
        local = name.rsplit(".", 1)[-1]
        # Masks only say which weights are zero; they are not stored for inference.
        if local in _RUNNING_STATS or local.endswith("mask"):
            continue
        tensors[name] = buffer
    return tensors


def count_params(model: nn.Module) -> int:
    """Parameters and buffers needed at inference, without normalization running stats or masks.

    A masked weight (see `pcnbench.masks`) counts only its nonzero entries.
    """
    masked = {id(m.param): m for m in masked_parameters(model)}
    total = 0
    for tensor in counted_tensors(model).values():
        m = masked.get(id(tensor))
        total += int((m.param * m.mask).count_nonzero()) if m is not None else tensor.numel()
    return total


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one inference on one sample of shape `input_shape`."""
    modes = [(module, module.training) for module in model.modules()]
    reference = next(iter(model.parameters()), None)
    if reference is None:
        reference = next(iter(model.buffers()), torch.zeros(()))
    dtype = reference.dtype if reference.is_floating_point() else torch.float32
    x = torch.zeros((1, *input_shape), dtype=dtype, device=reference.device)
    counter = FlopCounterMode(display=False)
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        # Restore each module's own mode: a model may deliberately mix train and eval parts.
        for module, training in modes:
            module.training = training
    flops = counter.get_total_flops()
    # A masked layer's multiply-accumulates scale with its density (zeros cost nothing in theory;
    # measured latency, reported separately, shows what dense kernels really do).
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    for m in masked_parameters(model):
        if m.param_name not in ("weight", "weight_orig"):
            continue  # a layer's multiply-accumulates belong to its weight
        key = f"{root}.{m.module_name}" if m.module_name else root
        module_flops = sum(per_module.get(key, {}).values())
        density = float(m.mask.count_nonzero()) / m.mask.numel()
        flops -= round(module_flops * (1.0 - density))
    return int(flops) // 2
