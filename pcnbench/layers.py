"""Choosing layers by name: the glob patterns methods take, checked against a model."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from pcnbench.errors import ParamError
from pcnbench.modes import eval_mode
from pcnbench.patterns import Patterns

__all__ = [
    "CONV_LINEAR",
    "WEIGHTED",
    "Patterns",
    "called_layers",
    "layer_names",
    "no_match_message",
    "select_layers",
    "weight_names",
]

LayerKinds = tuple[type[nn.Module], ...]
# Every convolution (1-, 2- and 3-D, transposed too) and every Linear, subclasses included.
CONV_LINEAR: LayerKinds = (nn.modules.conv._ConvNd, nn.Linear)
# ... and attention, whose input projections are weight matrices of its own.
WEIGHTED: LayerKinds = (*CONV_LINEAR, nn.MultiheadAttention)
_KIND_WORDS = {
    nn.modules.conv._ConvNd: "conv",
    nn.Linear: "linear",
    nn.MultiheadAttention: "attention",
}
_SHOWN = 24  # names listed in an error before "… (N in all)"


def layer_names(model: nn.Module, kinds: LayerKinds = CONV_LINEAR) -> list[str]:
    """Qualified names of the model's layers of `kinds` (conv and linear by default), in order."""
    return [name for name, module in model.named_modules() if name and isinstance(module, kinds)]


def select_layers(
    model: nn.Module,
    patterns: Iterable[str],
    *,
    key: str = "layers",
    kinds: LayerKinds = CONV_LINEAR,
) -> list[str]:
    """Layers of `kinds` whose qualified names match any fnmatch pattern, in model order.

    A pattern that matches no such layer is a typo far more often than intent, so it raises
    ParamError(key, ...) naming the pattern, the closest names and the layers there are.
    Works on a model built on the meta device (validation builds models that way).
    """
    names = layer_names(model, kinds)
    patterns = list(patterns)
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            raise ParamError(key, no_match_message(pattern, names, kinds))
    return [name for name in names if any(fnmatchcase(name, p) for p in patterns)]


def weight_names(module: nn.Module) -> list[str]:
    """The local names of a layer's weight matrices: `weight`, or attention's input projections.

    MultiheadAttention holds its input projection as one fused `in_proj_weight` (or as
    `q_proj_weight`, `k_proj_weight`, `v_proj_weight` when key and value widths differ); its
    output projection is its own Linear child, `out_proj`.
    """
    if isinstance(module, nn.MultiheadAttention):
        names = ["in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"]
        return [n for n in names if getattr(module, n, None) is not None]
    return ["weight"] if isinstance(getattr(module, "weight", None), nn.Parameter) else []


def called_layers(
    model: nn.Module, input_shape: tuple[int, ...], names: Iterable[str]
) -> list[str]:
    """The layers among `names` that one forward pass calls as modules, in call order.

    A layer whose parent reads its weight directly (MultiheadAttention's `out_proj`) or that
    the forward pass never reaches is left out. Runs the model (in eval mode, without
    gradients) on zeros where its parameters are, the meta device included.
    """
    import torch

    order: list[str] = []
    names = list(names)

    def hook_for(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            if name not in order:
                order.append(name)

        return hook

    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    handles = [model.get_submodule(n).register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros((2, *input_shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    return order


def _kind_words(kinds: LayerKinds) -> str:
    words = [_KIND_WORDS.get(kind, kind.__name__) for kind in kinds]
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]


def no_match_message(pattern: str, names: list[str], kinds: LayerKinds = CONV_LINEAR) -> str:
    """Say that `pattern` matches none of `names`, with a did-you-mean and the names listed."""
    what = _kind_words(kinds)
    close = difflib.get_close_matches(pattern, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f", … ({len(names)} in all)"
    return f"pattern '{pattern}' matches no {what} layer{hint} (layers: {shown or 'none'})"
