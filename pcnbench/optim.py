"""The optimizer a session builds from the recipe, and parameters a method keeps from decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pcnbench.recipe import Recipe

__all__ = ["build_optimizer", "exclude_from_weight_decay", "is_excluded_from_weight_decay"]

_FLAG = "_pcnbench_no_weight_decay"


def exclude_from_weight_decay(*params: nn.Parameter) -> None:
    """Train these parameters without the recipe's weight decay.

    For a transform that adds a parameter the original layer did not regularize, e.g. a bias
    that absorbs a constant where the layer had none: it keeps the original's treatment.
    The mark stays with the parameter object (deep copies and snapshots keep it).
    """
    for param in params:
        setattr(param, _FLAG, True)


def is_excluded_from_weight_decay(param: nn.Parameter) -> bool:
    """Whether `exclude_from_weight_decay` marked this parameter."""
    return bool(getattr(param, _FLAG, False))


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over the model's trainable parameters (marked ones undecayed)."""
    o, wd = recipe.optimizer, recipe.weight_decay
    params = [p for p in model.parameters() if p.requires_grad]
    plain = [p for p in params if not is_excluded_from_weight_decay(p)]
    groups: list[dict[str, Any]] = [{"params": plain}]
    if len(plain) < len(params):
        groups.append(
            {"params": [p for p in params if is_excluded_from_weight_decay(p)], "weight_decay": 0.0}
        )
    if o.name == "sgd":
        return torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=wd
        )
    optimizer = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return optimizer(groups, lr=o.lr, betas=o.betas, weight_decay=wd)
