"""Parameter and multiply-accumulate counts of a network as it runs at inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pcnbench.errors import PcnbenchError
from pcnbench.masks import masked_parameters

__all__ = ["check_countable", "count_macs", "count_params", "counted_tensors"]

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

    A masked weight (see `pcnbench.masks`) counts the entries its mask keeps, whatever they
    hold (`check_countable` makes sure the removed ones are zero).
    """
    masks = {id(m.param): m.mask for m in masked_parameters(model)}
    total, kept = 0, []
    for tensor in counted_tensors(model).values():
        mask = masks.get(id(tensor))
        if mask is None:
            total += tensor.numel()
        else:
            kept.append(mask.count_nonzero())
    return total + sum(_read(kept))  # the masks' counts in one read per device


def _read(scalars: list[torch.Tensor]) -> list[Any]:
    """The values of 0-d tensors of one dtype, read with one transfer per device."""
    values: list[Any] = [None] * len(scalars)
    by_device: dict[torch.device, list[int]] = {}
    for i, scalar in enumerate(scalars):
        by_device.setdefault(scalar.device, []).append(i)
    for indices in by_device.values():
        read = torch.stack([scalars[i] for i in indices]).tolist()
        for i, value in zip(indices, read, strict=True):
            values[i] = value
    return values


def check_countable(model: nn.Module) -> None:
    """Raise PcnbenchError unless every tensor is finite and every masked-off weight is zero.

    Counts come from the masks and the evaluation from the weights: both describe the same
    network only when the weights a mask removes hold exactly 0 (torch.nn.utils.prune's
    `weight_orig` is exempt: its forward multiplies by the mask).
    """
    tensors = [("parameter", name, t) for name, t in model.named_parameters()]
    tensors += [("buffer", name, t) for name, t in model.named_buffers()]
    tensors = [(kind, name, t) for kind, name, t in tensors if t.is_floating_point()]
    masked = [m for m in masked_parameters(model) if not m.param_name.endswith("_orig")]
    finite = _read([torch.isfinite(t).all() for _, _, t in tensors])
    for (kind, name, t), ok in zip(tensors, finite, strict=True):
        if not ok:
            n = int((~torch.isfinite(t)).count_nonzero())
            raise PcnbenchError(
                f"cannot record: {kind} {name} holds nan/inf ({n:,} of {t.numel():,} values);"
                " the training diverged or the method wrote them"
            )
    off_mask = _read([((m.param != 0) & (m.mask == 0)).count_nonzero() for m in masked])
    for m, off in zip(masked, off_mask, strict=True):
        if off:
            name = f"{m.module_name}.{m.param_name}" if m.module_name else m.param_name
            removed = int((m.mask == 0).count_nonzero())
            raise PcnbenchError(
                f"cannot record: {name} holds {off:,} nonzero weights at the {removed:,}"
                " positions its mask removes, so the counts (taken from the mask) would not"
                " describe the network evaluated; re-apply the masks after every optimizer step"
                " (session.add_step_hook(pcnbench.api.MaskEnforcer(session)))"
            )


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
