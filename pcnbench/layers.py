"""Choosing layers by name: the glob patterns methods take, checked against a model."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase

from torch import nn

from pcnbench.errors import ParamError
from pcnbench.patterns import Patterns

__all__ = ["Patterns", "layer_names", "no_match_message", "select_layers"]

LayerKinds = tuple[type[nn.Module], ...]
CONV_LINEAR: LayerKinds = (nn.Conv2d, nn.Linear)
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


def no_match_message(pattern: str, names: list[str], kinds: LayerKinds = CONV_LINEAR) -> str:
    """Say that `pattern` matches none of `names`, with a did-you-mean and the names listed."""
    what = " or ".join(k.__name__ for k in kinds)
    close = difflib.get_close_matches(pattern, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f", … ({len(names)} in all)"
    return f"pattern '{pattern}' matches no {what} layer{hint} (layers: {shown or 'none'})"
