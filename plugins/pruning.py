"""Unstructured magnitude pruning shared by `magnitude` and `lottery`: which weights, which mask.

Masks are ``weight_mask`` buffers beside the pruned weights (`pcnbench.api.set_mask`). The
mask functions are pure: they take weights (and the masks so far) and return new masks, which
only ever remove more weights. `pcnbench.api.MaskEnforcer` is the step hook that keeps pruned
weights at zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, NamedTuple

from pcnbench.api import ParamError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pcnbench.api import Coverage

# torch and the API's torch-using helpers are imported inside the functions that use them,
# so that loading the `magnitude` and `lottery` plugins does not import torch.

__all__ = [
    "Prunable",
    "attach_masks",
    "ceil_prune_count",
    "current_weights",
    "global_magnitude_masks",
    "imp_masks",
    "layer_densities",
    "layerwise_magnitude_masks",
    "magnitude_masks",
    "prunable_weights",
    "pruning_coverage",
    "zhu_gupta_sparsity",
    "zhu_gupta_update_steps",
]

Scope = Literal["global", "layer"]


class Prunable(NamedTuple):
    """One weight tensor a pruning method may mask: its module, local and qualified names."""

    module: nn.Module
    param_name: str  # `weight`, or attention's `in_proj_weight` (and q/k/v_proj_weight)
    qualified: str  # the parameter's name in the model, as `Coverage` takes it


def prunable_weights(
    model: nn.Module, exclude: Sequence[str] = (), include: Sequence[str] = ()
) -> dict[str, Prunable]:
    """The weight tensors to prune, by key: every conv's and linear's `weight` and attention's
    input projections, plus the weights of the layers `include` selects (an Embedding, say),
    minus the layers an `exclude` glob matches.

    Keys are layer names for a `weight` (`layer1.0.conv1`) and `layer.param` otherwise
    (`encoder.layers.0.self_attention.in_proj_weight`). A pattern that matches no layer
    raises ParamError naming it (`pcnbench.api.select_layers`), as does excluding every
    weight. Reads no weights, so it works on a model built on the meta device.
    """
    from torch import nn

    from pcnbench.api import WEIGHTED, layer_names, select_layers, weight_names

    excluded = set(select_layers(model, exclude, key="exclude", kinds=WEIGHTED))
    extra = (nn.Embedding, nn.EmbeddingBag, *WEIGHTED)
    included = set(select_layers(model, include, key="include", kinds=extra))
    kept: dict[str, Prunable] = {}
    seen: set[int] = set()  # a tied weight (an embedding shared with a decoder) once
    for name in layer_names(model, extra):
        module = model.get_submodule(name)
        if name in excluded or not (isinstance(module, WEIGHTED) or name in included):
            continue
        for param in weight_names(module):
            if id(getattr(module, param)) in seen:
                continue
            seen.add(id(getattr(module, param)))
            key = name if param == "weight" else f"{name}.{param}"
            kept[key] = Prunable(module, param, f"{name}.{param}")
    if not kept:
        raise ParamError(
            "exclude", "excludes every conv, linear and attention layer; nothing to prune"
        )
    return kept


def pruning_coverage(
    model: nn.Module, method: str, exclude: Sequence[str] = (), include: Sequence[str] = ()
) -> Coverage:
    """What pruning `model` with these patterns reduces and what it leaves dense, and why."""
    from pcnbench.api import WEIGHTED, Coverage, Reason, select_layers, weight_names

    account = Coverage(model, method)
    for name in select_layers(model, exclude, key="exclude", kinds=WEIGHTED):
        for param in weight_names(model.get_submodule(name)):
            account.leave(f"{name}.{param}", Reason.PATTERN)
    account.reduce(*(p.qualified for p in prunable_weights(model, exclude, include).values()))
    return account


def _current_masks(
    weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    import torch

    if masks is None:
        return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    return {name: masks[name].to(device=w.device).bool() for name, w in weights.items()}


def global_magnitude_masks(
    weights: Mapping[str, torch.Tensor],
    count: int,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks that also remove the `count` smallest-|w| weights still unpruned, ranked globally.

    One threshold across all layers (ties broken by position, so exactly `count` go). Masks
    come back in each weight's dtype, 1 = kept, 0 = pruned.
    """
    import torch

    kept = _current_masks(weights, masks)
    flat_abs = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    flat_kept = torch.cat([m.flatten() for m in kept.values()])
    candidates = flat_kept.nonzero().squeeze(1)
    if not 0 <= count <= len(candidates):
        raise ValueError(f"cannot prune {count} of {len(candidates)} remaining weights")
    order = torch.argsort(flat_abs[candidates], stable=True)
    flat_kept[candidates[order[:count]]] = False
    out: dict[str, torch.Tensor] = {}
    for (name, w), chunk in zip(
        weights.items(), flat_kept.split([w.numel() for w in weights.values()]), strict=True
    ):
        out[name] = chunk.view_as(w).to(w.dtype)
    return out


def layerwise_magnitude_masks(
    weights: Mapping[str, torch.Tensor],
    sparsity: float,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks pruning every layer to round(sparsity × its size) weights by smallest |w|.

    The count rounds like `torch.nn.utils.prune.l1_unstructured`; already-pruned weights stay
    pruned (a layer already sparser than asked keeps its mask).
    """
    kept = _current_masks(weights, masks)
    out: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        more = max(0, round(sparsity * w.numel()) - int((~kept[name]).sum()))
        out.update(global_magnitude_masks({name: w}, more, {name: kept[name]}))
    return out


def magnitude_masks(
    weights: Mapping[str, torch.Tensor],
    sparsity: float,
    scope: Scope,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks removing a `sparsity` fraction of the weights, globally or per layer.

    Global: round(sparsity × all weights) pruned in all, as
    `torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=sparsity)`.
    Weights pruned by `masks` stay pruned and count towards the target.
    """
    if scope == "layer":
        return layerwise_magnitude_masks(weights, sparsity, masks)
    kept = _current_masks(weights, masks)
    total = sum(w.numel() for w in weights.values())
    pruned = total - sum(int(m.sum()) for m in kept.values())
    return global_magnitude_masks(weights, max(0, round(sparsity * total) - pruned), kept)


def ceil_prune_count(remaining: int, rate: float) -> int:
    """Weights one IMP level prunes: ceil(rate × remaining) (OpenLTH `sparse_global`)."""
    # The rate as the decimal it was written as: 0.7 × 10 is 7, not float's 7.000000000000001.
    return math.ceil(Fraction(str(rate)) * remaining)


def imp_masks(
    weights: Mapping[str, torch.Tensor],
    rate: float,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One IMP level: prune ceil(rate × remaining) of the unpruned weights by one global |w|."""
    remaining = sum(int(m.count_nonzero()) for m in _current_masks(weights, masks).values())
    return global_magnitude_masks(weights, ceil_prune_count(remaining, rate), masks)


def zhu_gupta_sparsity(
    step: int, initial: float, final: float, start_step: int, end_step: int
) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, t clamped to the window."""
    if end_step <= start_step:
        raise ValueError(f"empty pruning window: steps {start_step}..{end_step}")
    progress = min(max((step - start_step) / (end_step - start_step), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def zhu_gupta_update_steps(start_step: int, end_step: int, frequency: int) -> list[int]:
    """Steps at which gradual pruning updates the mask: t0, t0 + Δt, … and the window's end."""
    steps = list(range(start_step, end_step, frequency))
    return [*steps, end_step]


def attach_masks(weights: Mapping[str, Prunable], masks: Mapping[str, torch.Tensor]) -> None:
    """Set each weight's mask (zeroing the pruned weights)."""
    from pcnbench.api import set_mask

    for key, mask in masks.items():
        set_mask(weights[key].module, weights[key].param_name, mask)


def layer_densities(model: nn.Module) -> dict[str, float]:
    """Fraction of weights kept in each masked tensor, keyed as `prunable_weights` keys them."""
    from pcnbench.api import masked_parameters

    return {
        m.module_name if m.param_name == "weight" else f"{m.module_name}.{m.param_name}": int(
            m.mask.count_nonzero()
        )
        / m.mask.numel()
        for m in masked_parameters(model)
    }


def current_weights(weights: Mapping[str, Prunable]) -> dict[str, torch.Tensor]:
    """The tensors behind `prunable_weights`, by the same keys."""
    return {key: getattr(p.module, p.param_name) for key, p in weights.items()}
