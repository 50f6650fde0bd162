"""The masked-weight convention every pruning plugin shares, and the counting that honours it.

A parameter ``P`` of a module is *masked* when the module has a buffer ``P_mask`` of the same
shape (``weight`` → ``weight_mask``; torch.nn.utils.prune's ``weight_orig`` → ``weight_mask``).
A method keeps masked weights at exactly zero by re-applying the mask after every optimizer
step (a `Session.add_step_hook`), so the layer runs unchanged (dense kernels). Counting reads
which weights remain from the mask, never from the weights (a nan times 0 is not 0), and
`Session.record` refuses a model whose removed weights are not exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from pcnbench.protocols import Session

__all__ = ["MaskEnforcer", "Masked", "mask_density", "masked_parameters", "set_mask"]


@dataclass(frozen=True)
class Masked:
    """One masked parameter: its module's qualified name, the parameter, and its mask."""

    module_name: str
    param_name: str  # local name on the module, e.g. "weight"
    param: nn.Parameter
    mask: torch.Tensor


def _mask_name(param_name: str) -> str:
    base = param_name[: -len("_orig")] if param_name.endswith("_orig") else param_name
    return f"{base}_mask"


def masked_parameters(model: nn.Module) -> Iterator[Masked]:
    """Every masked parameter of `model`, in module order."""
    for module_name, module in model.named_modules():
        buffers = dict(module.named_buffers(recurse=False))
        for param_name, param in module.named_parameters(recurse=False):
            mask = buffers.get(_mask_name(param_name))
            if mask is not None and mask.shape == param.shape:
                yield Masked(module_name, param_name, param, mask)


def set_mask(module: nn.Module, param_name: str, mask: torch.Tensor) -> None:
    """Attach (or replace) the mask of `module.<param_name>` and zero the weights it removes."""
    param = getattr(module, param_name)
    mask = mask.to(device=param.device, dtype=param.dtype)
    name = _mask_name(param_name)
    if name in dict(module.named_buffers(recurse=False)):
        getattr(module, name).copy_(mask)
    else:
        module.register_buffer(name, mask.clone())
    with torch.no_grad():
        param.mul_(getattr(module, name))


def mask_density(model: nn.Module) -> float | None:
    """Fraction of masked weights that remain, read from the masks (None when none is masked)."""
    masks = [m.mask for m in masked_parameters(model)]
    total = sum(mask.numel() for mask in masks)
    if not total:
        return None
    # one read of the device, not one per mask
    kept = int(torch.stack([mask.count_nonzero() for mask in masks]).sum())
    return kept / total


class MaskEnforcer:
    """Step hook that zeroes every masked weight of the session's model after each step.

    Use: `enforce = MaskEnforcer(session); session.add_step_hook(enforce)`, after `set_mask`.

    The (weight, mask) pairs are cached per model object and re-read when the session's model
    is replaced (restore, assignment); call `refresh()` after attaching new mask buffers.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._model: nn.Module | None = None
        self._params: list[torch.Tensor] = []
        self._masks: list[torch.Tensor] = []

    def refresh(self) -> None:
        """Forget the cached pairs (new masks were attached to the current model)."""
        self._model = None

    @torch.no_grad()
    def __call__(self) -> None:
        """Re-apply the masks (momentum and weight decay move pruned weights off zero)."""
        model = self._session.model
        if model is not self._model:
            pairs = [(m.param, m.mask) for m in masked_parameters(model)]
            self._params = [p for p, _ in pairs]
            self._masks = [mask for _, mask in pairs]
            self._model = model
        if self._params:
            torch._foreach_mul_(self._params, self._masks)
