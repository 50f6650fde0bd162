"""The recipe's optimizer, and parameters a method keeps from weight decay."""

from __future__ import annotations

import torch
from torch import nn

from pcnbench.api import Recipe, exclude_from_weight_decay
from pcnbench.optim import build_optimizer

RECIPE = Recipe(epochs=1, batch_size=4, weight_decay=0.1, optimizer={"name": "sgd", "lr": 1.0})


def test_an_unmarked_model_keeps_one_parameter_group() -> None:
    model = nn.Linear(3, 2)
    (group,) = build_optimizer(model, RECIPE).param_groups
    assert group["weight_decay"] == 0.1 and len(group["params"]) == 2


def test_a_marked_parameter_is_trained_without_weight_decay() -> None:
    model = nn.Linear(3, 2)
    exclude_from_weight_decay(model.bias)
    optimizer = build_optimizer(model, RECIPE)
    decayed, kept = optimizer.param_groups
    assert [p is model.weight for p in decayed["params"]] == [True]
    assert [p is model.bias for p in kept["params"]] == [True] and kept["weight_decay"] == 0.0
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    for p in model.parameters():  # no gradient: only weight decay moves a parameter
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(model.weight, weight * (1 - 0.1))
    assert torch.equal(model.bias, bias)
