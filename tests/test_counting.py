"""Parameter and MAC counting."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pcnbench.counting import check_countable, count_macs, count_params
from pcnbench.errors import PcnbenchError
from pcnbench.masks import mask_density, set_mask


def test_linear_counts_weights_bias_and_macs() -> None:
    layer = nn.Linear(10, 5)
    assert count_params(layer) == 55
    assert count_macs(layer, (10,)) == 50


def test_batchnorm_counts_affine_but_not_running_stats() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
    assert count_params(model) == 8 * 3 * 3 * 3 + 8 + 8


def test_conv_macs_are_out_in_k_k_hout_wout() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    h_out = w_out = 8  # 16×16 input, stride 2, padding 1
    assert count_macs(conv, (3, 16, 16)) == 8 * 3 * 3 * 3 * h_out * w_out


def test_masks_are_excluded_and_other_buffers_counted() -> None:
    layer = nn.Linear(4, 3, bias=False)
    layer.register_buffer("weight_mask", torch.ones(3, 4))
    layer.register_buffer("mask", torch.ones(3, 4))
    layer.register_buffer("basis", torch.ones(4, 2))  # e.g. a PCA basis used at inference
    assert count_params(layer) == 12 + 8


def test_shared_parameters_count_once() -> None:
    layer = nn.Linear(6, 6)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert count_params(model) == 42
    assert count_macs(model, (6,)) == 72


def test_count_macs_runs_in_eval_mode_and_restores_each_modules_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model.train()
    model[2].eval()
    # BatchNorm in training mode would reject a batch of one sample.
    assert count_macs(model, (4,)) == 16
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert int(model[1].num_batches_tracked) == 0


def test_a_masked_weight_counts_what_its_mask_keeps_whatever_the_weights_hold() -> None:
    layer = nn.Linear(4, 3, bias=False)
    mask = torch.ones(3, 4)
    mask[:, 0] = 0
    set_mask(layer, "weight", mask)
    with torch.no_grad():
        layer.weight[:, 0] = math.nan  # removed: nan × 0 is nan, not 0, but it is gone
        layer.weight[1, 2] = 0.0  # kept: a stored weight that happens to be zero
    assert count_params(layer) == 9
    assert mask_density(layer) == 0.75
    assert count_macs(layer, (4,)) == 9


def test_check_countable_passes_a_clean_model_and_exempts_prunes_weight_orig() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    set_mask(model[0], "weight", torch.tensor([[1.0, 0, 1, 0]] * 3))
    check_countable(model)
    prune.l1_unstructured(model[2], "weight", amount=0.5)  # weight_orig keeps removed values
    assert int((model[2].weight_orig * (1 - model[2].weight_mask)).count_nonzero()) == 3
    check_countable(model)
    assert count_params(model) == (6 + 3) + (3 + 3) + (3 + 2)  # kept + bias, BN affine
    with torch.no_grad():
        model[2].weight_orig[0, 0] = math.inf  # the forward multiplies: inf × 0 is nan
    with pytest.raises(PcnbenchError, match=r"^cannot record: parameter 2\.weight_orig holds"):
        check_countable(model)
