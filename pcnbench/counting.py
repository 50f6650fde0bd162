"""Parameter and multiply-accumulate counts of a network as it runs at inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from pcnbench.errors import PcnbenchError
from pcnbench.masks import masked_parameters
from pcnbench.modes import eval_mode

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
    """Multiply-accumulates of one inference on one sample of shape `input_shape`.

    Every operation `torch.utils.flop_counter` has a formula for is counted, attention
    included: the count runs attention on its plain path (no fused kernel hides its matrix
    products). An operation reading a masked weight (see `pcnbench.masks`), or a slice of one
    such as attention's fused input projection, scales with the density of what it reads.
    """
    reference = next(iter(model.parameters()), None)
    if reference is None:
        reference = next(iter(model.buffers()), torch.zeros(()))
    dtype = reference.dtype if reference.is_floating_point() else torch.float32
    x = torch.zeros((1, *input_shape), dtype=dtype, device=reference.device)
    counter = _MaskedFlops([(m.param, m.mask) for m in masked_parameters(model)])
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with eval_mode(model), torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.flops) // 2


class _MaskedFlops(TorchDispatchMode):
    """Counts FLOPs with flop_counter's formulas, each op reading a masked weight scaled by the
    density of the part it reads (zeros cost nothing in theory; measured latency, reported
    separately, shows what dense kernels really do)."""

    def __init__(self, masked: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.flops = 0
        self._masked = {p.untyped_storage().data_ptr(): (p, mask) for p, mask in masked}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func.overloadpacket)
        if formula is None:
            return out
        flops = formula(*args, **kwargs, out_val=out)
        if self._masked:
            for value in tree_flatten((args, kwargs))[0]:
                if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
                    continue
                found = self._masked.get(value.untyped_storage().data_ptr())
                if found is not None:
                    flops -= round(flops * (1.0 - _density_of_view(value, *found)))
                    break
        self.flops += flops
        return out


def _density_of_view(view: torch.Tensor, param: torch.Tensor, mask: torch.Tensor) -> float:
    """The share of `view`'s entries (a view of `param`) that `mask` keeps."""
    if param.is_contiguous() and mask.is_contiguous():
        offset = view.storage_offset() - param.storage_offset()
        try:
            part = mask.as_strided(view.size(), view.stride(), mask.storage_offset() + offset)
        except RuntimeError:  # a view the mask's storage cannot mirror: the whole mask
            part = mask
    else:
        part = mask
    return float(part.count_nonzero()) / max(1, part.numel())
