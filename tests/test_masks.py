"""The masked-weight convention: counting nonzeros, MACs scaled by density, step hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pcnbench.api import TensorSplits
from pcnbench.counting import count_macs, count_params
from pcnbench.errors import PcnbenchError
from pcnbench.masks import MaskEnforcer, mask_density, masked_parameters, set_mask
from pcnbench.recipe import Recipe
from pcnbench.session import Session


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_masked_weights_count_only_nonzeros_and_masks_are_not_parameters():
    model = net()
    dense = count_params(model)
    mask = torch.ones(3, 144)
    mask[:, :100] = 0
    set_mask(model[2], "weight", mask)
    assert count_params(model) == dense - 300
    assert mask_density(model) == 44 / 144  # only the linear weight is masked
    assert [(m.module_name, m.param_name) for m in masked_parameters(model)] == [("2", "weight")]


def test_macs_of_a_masked_layer_scale_with_its_density():
    model = net()
    conv_macs = 4 * 1 * 9 * 36
    linear_macs = 144 * 3
    assert count_macs(model, (1, 6, 6)) == conv_macs + linear_macs
    mask = torch.zeros(4, 1, 3, 3)
    mask[:1] = 1  # a quarter of the conv weights stay
    set_mask(model[0], "weight", mask)
    assert count_macs(model, (1, 6, 6)) == conv_macs // 4 + linear_macs


def test_step_hook_keeps_pruned_weights_zero_through_momentum_and_weight_decay():
    x = torch.rand(64, 1, 6, 6)
    y = torch.randint(0, 3, (64,))
    data = TensorSplits(x, y, x[:16], y[:16], (0.5,), (0.25,))
    recipe = Recipe(
        epochs=13, batch_size=16, weight_decay=0.01, optimizer={"lr": 0.1, "momentum": 0.9}
    )
    session = Session(net(), data, recipe, seed=0)
    session.train(until="2it")  # momentum buffers exist for every weight
    mask = (torch.rand(3, 144) > 0.5).float()
    set_mask(session.model[2], "weight", mask)

    @torch.no_grad()
    def reapply() -> None:  # what a pruning method's step hook does
        for m in masked_parameters(session.model):
            m.param.mul_(m.mask)

    session.add_step_hook(reapply)
    session.train(until="52it")  # 50 more steps
    weight = session.model[2].weight
    assert torch.count_nonzero(weight[mask == 0]) == 0
    assert torch.count_nonzero(weight[mask == 1]) == int(mask.sum())
    row = session.record()
    assert row["density"] == int(mask.sum()) / mask.numel()
    assert row["compression"] == row["dense_params"] / row["params"] > 1
    assert row["speedup"] == row["dense_macs"] / row["macs"] > 1


def test_record_refuses_removed_weights_that_no_step_hook_keeps_at_zero():
    x = torch.rand(64, 1, 6, 6)
    y = torch.randint(0, 3, (64,))
    data = TensorSplits(x, y, x[:16], y[:16], (0.5,), (0.25,))
    recipe = Recipe(
        epochs=2, batch_size=16, weight_decay=0.01, optimizer={"lr": 0.1, "momentum": 0.9}
    )
    session = Session(net(), data, recipe, seed=0)
    session.train(until="2it")  # momentum buffers exist for every weight
    mask = torch.ones(3, 144)
    mask[:, :100] = 0
    set_mask(session.model[2], "weight", mask)  # zeroes them once; no step hook re-applies it
    assert count_params(session.model) == count_params(net()) - 300
    session.train(until="4it")  # momentum moves every removed weight off zero
    weight = session.model[2].weight
    assert int(torch.count_nonzero(weight[mask == 0])) == 300
    with pytest.raises(PcnbenchError) as raised:
        session.record()
    message = str(raised.value)
    assert message.startswith(
        "cannot record: 2.weight holds 300 nonzero weights at the 300 positions its mask removes"
    )
    assert "pcnbench.api.MaskEnforcer" in message and session.results == []
    enforce = MaskEnforcer(session)
    enforce()  # what the missing step hook would have done
    assert session.record()["params"] == count_params(net()) - 300
