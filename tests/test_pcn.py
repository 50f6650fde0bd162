"""PCN: exactness at full rank, keep rules, shared bases, buffers, counting and the method."""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pydantic import ValidationError
from torch import nn

from pcnbench.api import DataInfo
from pcnbench.counting import count_macs, count_params, counted_tensors
from pcnbench.errors import ParamError, SuiteError
from pcnbench.optim import build_optimizer, is_excluded_from_weight_decay
from pcnbench.recipe import Recipe
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.datasets.synthetic import Synthetic
from pcnbench_plugins.models.cifar_resnet import ResNet
from pcnbench_plugins.models.cifar_vgg import VGG
from pcnbench_plugins.models.mlp import CNN, MLP
from pcnbench_plugins.pcn import (
    PCN,
    PCABasis,
    PCAConv2d,
    PCALinear,
    PCNParams,
    choose_k,
    explained_fraction,
    parse_keep,
    pca,
    pcn_transform,
)
from tests.conftest import BASE_SUITE

CIFAR = DataInfo((3, 32, 32), 10)
FEW_SAMPLES = "ignore:pcn.*fewer calibration samples than input features:UserWarning"
# Most tests calibrate on a handful of samples for speed; the warning has its own tests
# (pytest.warns records warnings whatever the filters say).
pytestmark = pytest.mark.filterwarnings(FEW_SAMPLES)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def with_bn_statistics(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random affine parameters and running statistics, so BatchNorm is far from identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean = 0.3 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)
    return model


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 5)
    )


def resnet20_width2() -> nn.Module:
    torch.manual_seed(0)
    return ResNet().build(ResNet.Params(depth=20, width=2), CIFAR)


def vgg11() -> nn.Module:
    torch.manual_seed(0)
    return VGG().build(VGG.Params(depth=11), CIFAR)


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def odd_convnet() -> nn.Module:
    """Reflect padding, 'same' padding, stride 2 and a bias-free conv: each border case."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, padding_mode="reflect", stride=2),
        nn.ReLU(),
        nn.Conv2d(12, 12, 4, padding="same", bias=False),
        nn.Tanh(),
        nn.Conv2d(12, 6, 3, padding=2, stride=2),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )


EXACT_CASES = {
    "mlp": (mlp, (3, 4, 4)),
    "resnet20_width2": (resnet20_width2, (3, 32, 32)),
    "vgg11": (vgg11, (3, 32, 32)),
    "torchvision_resnet18": (resnet18, (3, 64, 64)),
    "odd_convnet": (odd_convnet, (3, 16, 16)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note
@pytest.mark.parametrize("case", list(EXACT_CASES))
def test_full_rank_pcn_computes_the_same_function(case: str) -> None:
    build, shape = EXACT_CASES[case]
    model = with_bn_statistics(build()).double().eval()
    x = torch.randn(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    # At k = d every layer holds more than before: grow=True transforms them all anyway.
    new, report = pcn_transform(model, [x[:2], x[2:]], keep="f1.0", grow=True)
    new.eval()
    with torch.no_grad():
        expected, got = model(x), new(x)
    assert relative_error(got, expected) < 1e-5
    convs_and_linears = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # Every conv/linear but the first is rewritten, each keeping all d components.
    assert len(report.layers) == len(convs_and_linears) - 1
    assert all(layer.k == layer.d for layer in report.layers.values())
    assert all(layer.explained == pytest.approx(1.0) for layer in report.layers.values())
    assert sum(isinstance(m, (PCAConv2d, PCALinear)) for m in new.modules()) == len(report.layers)


def test_transform_leaves_the_original_model_unchanged() -> None:
    model = mlp().double()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 3, 4, 4, dtype=torch.float64)
    new, _ = pcn_transform(model, [x], keep="d4")
    assert model.training and new.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, PCALinear) for m in model.modules())
    assert not model._forward_pre_hooks and not model[3]._forward_pre_hooks


def low_rank_inputs(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Inputs with a decaying spectrum, so every extra component matters less."""
    g = torch.Generator().manual_seed(seed)
    scales = 0.7 ** torch.arange(d, dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * scales) @ rotation + 0.5


def test_output_error_shrinks_monotonically_as_k_grows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 6)
    ).double()
    x = low_rank_inputs(256, 32)
    with torch.no_grad():
        expected = model(x)
        errors = []
        for k in (1, 2, 4, 8, 16, 32):
            new, report = pcn_transform(model, [x[:128], x[128:]], keep=f"d{k}", grow=True)
            errors.append(relative_error(new(x), expected))
            assert {layer.k for layer in report.layers.values()} == {k}
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[0] > 1e-2
    assert errors[-1] < 1e-10


def test_conv_output_error_shrinks_as_k_grows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(16, 16, 3, padding=1, stride=2),
        nn.Tanh(),
        nn.Conv2d(16, 8, 3, padding=1),
    ).double()
    x = torch.randn(8, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        errors = [
            relative_error(pcn_transform(model, [x], keep=f"d{k}", grow=True)[0](x), expected)
            for k in (1, 2, 4, 8, 12, 16)
        ]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[0] > 0.1
    assert errors[-1] < 1e-10


def test_basis_tensors_are_untrained_buffers() -> None:
    torch.manual_seed(0)
    model = mlp()
    x = torch.randn(32, 3, 4, 4)
    new, _ = pcn_transform(model, [x], keep="d8")
    layer = new[3]
    assert isinstance(layer, PCALinear)
    buffers = dict(new.named_buffers())
    assert buffers["3.basis.offset"] is layer.basis.offset and buffers["3.basis.V"] is layer.basis.V
    assert layer.basis.V.shape == (32, 8) and layer.basis.offset.shape == (8,)
    parameter_ids = {id(p) for p in new.parameters()}
    assert id(layer.basis.V) not in parameter_ids and id(layer.basis.offset) not in parameter_ids
    offset, basis = layer.basis.offset.clone(), layer.basis.V.clone()
    optimizer = torch.optim.SGD(new.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    assert id(layer.basis.V) not in {id(p) for g in optimizer.param_groups for p in g["params"]}
    weight = layer.weight.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        new(x).square().mean().backward()
        optimizer.step()
    assert layer.basis.V.grad is None and layer.basis.offset.grad is None
    assert not layer.basis.V.requires_grad
    assert torch.equal(layer.basis.V, basis) and torch.equal(layer.basis.offset, offset)
    assert not torch.equal(layer.weight.detach(), weight)  # the layer itself does train


def test_param_count_includes_the_basis_by_hand() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)
    )
    x = torch.randn(40, 8)
    new, report = pcn_transform(model, [x], keep="d5", grow=True)
    first = 8 * 16 + 16  # untransformed
    # What inference stores and uses: V and the folded offset −Vᵀμ (not μ), W′, b′.
    second = 16 * 5 + 5 + 12 * 5 + 12
    third = 12 * 5 + 5 + 4 * 5 + 4
    assert count_params(new) == first + second + third == 390
    # By default the third layer stays dense: transformed it holds 89 parameters, dense 52.
    smaller, default = pcn_transform(model, [x], keep="d5")
    assert count_params(smaller) == first + second + 12 * 4 + 4 == 353
    assert default.skipped["5"] == "would add parameters (52 dense → 89 transformed)"
    assert sorted(n for n in counted_tensors(new) if "basis" in n) == [
        "3.basis.V",
        "3.basis.offset",
        "5.basis.V",
        "5.basis.offset",
    ]
    assert {name: (layer.d, layer.k) for name, layer in report.layers.items()} == {
        "3": (16, 5),
        "5": (12, 5),
    }
    assert count_params(model) == 8 * 16 + 16 + 16 * 12 + 12 + 12 * 4 + 4


def test_resnet_shortcut_and_conv1_share_one_basis() -> None:
    model = resnet20_width2()
    x = torch.randn(4, 3, 32, 32)
    new, report = pcn_transform(model, [x], keep="f0.5")
    block = new.blocks[3]  # first block of stage 2: 1×1 conv shortcut
    assert block.conv1.basis is block.shortcut[0].basis
    shared = block.conv1.basis
    assert report.layers["blocks.3.shortcut.0"].basis == "blocks.3.conv1"
    assert report.layers["blocks.3.shortcut.0"].k == report.layers["blocks.3.conv1"].k == 16
    # An identity-shortcut block's conv1 has its own basis, unshared.
    assert new.blocks[1].conv1.basis is not new.blocks[1].conv2.basis
    new = new.double()  # conversions keep the sharing: one module holds the buffers
    assert block.conv1.basis.V is block.shortcut[0].basis.V and shared.V.dtype == torch.float64
    names = [n for n, t in counted_tensors(new).items() if t is shared.V]
    assert len(names) == 1
    unshared = sum(t.numel() for t in counted_tensors(new).values())
    assert count_params(new) == unshared


def test_torchvision_downsample_shares_the_block_input_basis() -> None:
    model = resnet18()
    new, _ = pcn_transform(model, [torch.randn(2, 3, 32, 32)], keep="f0.25")
    for stage in (new.layer2, new.layer3, new.layer4):
        assert stage[0].conv1.basis is stage[0].downsample[0].basis
        assert stage[0].conv1.basis.V is stage[0].downsample[0].basis.V


def test_shared_input_keeps_the_largest_k_its_layers_ask_for() -> None:
    model = resnet20_width2()
    x = torch.randn(4, 3, 32, 32)
    _, report = pcn_transform(
        model, [x], keep="f0.5", layers={"blocks.3.shortcut.0": "f0.25", "blocks.6.conv1": "d4"}
    )
    assert report.layers["blocks.3.conv1"].k == report.layers["blocks.3.shortcut.0"].k == 16
    assert report.layers["blocks.6.conv1"].k == report.layers["blocks.6.shortcut.0"].k == 32
    assert report.layers["blocks.3.conv1"].rule == "f0.5"


SPECTRUM = [5.0, 3.0, 1.0, 0.5, 0.25, 0.25]  # total 10


@pytest.mark.parametrize(
    ("rule", "k"),
    [
        ("d2", 2),
        ("d64", 6),
        ("f0.5", 3),
        ("f0.34", 3),  # ceil(2.04)
        ("f0.1", 1),  # ceil(0.6)
        ("f1.0", 6),
        ("v0.5", 1),
        ("v0.8", 2),
        ("v0.81", 3),
        ("v0.975", 5),
        ("v1", 6),
        ("t1", 3),
        ("t0.3", 4),
        ("t0.25", 6),
        ("t100", 1),  # at least one is kept
        ("t0", 6),
    ],
)
def test_keep_rule_picks_k_on_a_known_spectrum(rule: str, k: int) -> None:
    assert choose_k(rule, SPECTRUM) == k


def test_fraction_rule_is_not_fooled_by_float_rounding() -> None:
    assert choose_k("f0.1", [1.0] * 30) == 3  # 0.1 * 30 = 3.0000000000000004
    assert choose_k("f0.25", [1.0] * 64) == 16


def test_explained_fraction_is_the_kept_share_of_variance() -> None:
    assert explained_fraction(SPECTRUM, 2) == pytest.approx(0.8)
    assert explained_fraction([2.0, 1.0, -1e-17], 1) == pytest.approx(2 / 3)
    assert explained_fraction([0.0, 0.0], 1) == 1.0


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("x5", "expected d<count>"),
        ("64", "expected d<count>"),
        ("d0", "whole count ≥ 1"),
        ("d2.5", "whole count ≥ 1"),
        ("f0", "fraction in (0, 1]"),
        ("f1.5", "fraction in (0, 1]"),
        ("v0", "fraction in (0, 1]"),
        ("t-1", "threshold ≥ 0"),
        ("tinf", "threshold ≥ 0"),
        ("fabc", "not a number"),
    ],
)
def test_invalid_keep_rules_are_rejected_with_the_accepted_forms(rule: str, message: str) -> None:
    with pytest.raises(ValueError, match=rule) as info:
        parse_keep(rule)
    assert message in str(info.value)


def test_parse_keep_reads_each_kind() -> None:
    assert (parse_keep("d64").kind, parse_keep("d64").value) == ("d", 64)
    assert parse_keep("t1e-3").value == pytest.approx(1e-3)
    assert parse_keep("v0.999").kind == "v"


def test_pca_returns_descending_eigenpairs_of_the_covariance() -> None:
    x = low_rank_inputs(500, 6)
    covariance = torch.cov(x.T)
    eigenvalues, vectors = pca(covariance)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])
    assert torch.allclose(covariance @ vectors, vectors * eigenvalues, atol=1e-12)
    assert torch.allclose(vectors.T @ vectors, torch.eye(6, dtype=torch.float64), atol=1e-12)


def test_conv_pca_treats_every_position_as_a_sample() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 3, 3)).double()
    x = torch.randn(6, 2, 7, 7, dtype=torch.float64)
    new, report = pcn_transform(model, [x[:4], x[4:]], keep="d2")
    with torch.no_grad():
        rows = model[1](model[0](x)).permute(0, 2, 3, 1).reshape(-1, 5)
    expected = torch.linalg.eigvalsh(torch.cov(rows.T)).flip(0)
    layer = report.layers["2"]
    assert layer.samples == 6 * 7 * 7
    assert torch.allclose(torch.tensor(layer.spectrum, dtype=torch.float64), expected)
    assert torch.allclose(new[2].basis.offset, -(rows.mean(0) @ new[2].basis.V))


def test_grouped_and_dilated_convs_are_left_alone_and_the_report_says_why() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in the report (and the coverage), not warned
        new, report = pcn_transform(model, [torch.randn(4, 3, 8, 8)], keep="f0.5")
    assert type(new[2]) is nn.Conv2d and type(new[4]) is nn.Conv2d
    assert report.skipped["2"] == "grouped convolution (groups=2)"
    assert report.skipped["4"] == "dilated convolution (dilation=(2, 2))"
    assert list(report.layers) == ["6"]
    assert isinstance(new[6], PCAConv2d)


def test_layers_overrides_set_rules_and_null_leaves_a_layer_alone() -> None:
    torch.manual_seed(0)
    model = mlp()
    new, report = pcn_transform(
        model, [torch.randn(64, 3, 4, 4)], keep="d4", layers={"*": "d8", "5": None}
    )
    assert report.layers["3"].k == 8
    assert type(new[5]) is nn.Linear
    assert report.skipped == {
        "1": "first layer (reads the network input)",
        "5": "excluded by the suite's layer patterns",
    }


def test_the_first_layer_is_never_transformed_even_when_named() -> None:
    model = mlp()
    new, report = pcn_transform(model, [torch.randn(8, 3, 4, 4)], keep="d4", layers={"1": "d2"})
    assert type(new[1]) is nn.Linear and "1" not in report.layers


def test_a_pattern_matching_no_layer_is_an_error_listing_the_layers() -> None:
    with pytest.raises(ParamError, match=r"'blocks\.\*' matches no conv or linear.*1, 3, 5"):
        pcn_transform(mlp(), [torch.randn(8, 3, 4, 4)], layers={"blocks.*": "d2"})


def test_check_model_rejects_a_pattern_matching_no_layer_on_a_meta_model() -> None:
    with torch.device("meta"):
        model = vgg11()
    assert all(p.is_meta for p in model.parameters())
    PCN().check_model(PCNParams(layers={"layers.*.conv": "d8", "fc": None}), model)
    with pytest.raises(ParamError, match=r"'fcc' matches no .*did you mean 'fc'") as info:
        PCN().check_model(PCNParams(layers={"fcc": None}), model)
    assert info.value.key == "layers"


def test_report_rows_are_plain_data_with_the_spectrum() -> None:
    _, report = pcn_transform(mlp(), [torch.randn(64, 3, 4, 4)], keep="v0.9", grow=True)
    rows = report.layer_rows()
    assert [row["name"] for row in rows] == ["3", "5"]
    row = rows[0]
    assert row["d"] == 32 and len(row["spectrum"]) == 32 and row["explained"] >= 0.9
    assert row["spectrum"] == sorted(row["spectrum"], reverse=True)
    assert report.skipped_rows() == [
        {"layer": "1", "reason": "first layer (reads the network input)"}
    ]


def test_pcn_at_f025_shrinks_resnet_params_and_macs() -> None:
    model = resnet20_width2()
    new, _ = pcn_transform(model, [torch.randn(4, 3, 32, 32)], keep="f0.25")
    assert count_params(new) < 0.35 * count_params(model)
    assert count_macs(new, (3, 32, 32)) < 0.35 * count_macs(model, (3, 32, 32))


def test_prune_outputs_removes_dead_units_exactly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)
    ).double()
    with torch.no_grad():  # four hidden units constant at 2: zero variance, nonzero mean
        model[1].weight[:4] = 0
        model[1].bias[:4] = 2.0
    x = torch.randn(64, 8, dtype=torch.float64)
    new, report = pcn_transform(model, [x], keep="d12", prune_outputs=True, grow=True)
    assert new[1].out_features == 12 and new[1].weight.shape == (12, 8)
    assert new[3].basis.V.shape == (12, 12)
    assert report.layers["3"].pruned == "1" and report.layers["3"].inputs_kept == 12
    assert report.layers["5"].pruned is None  # k = d: nothing to remove
    with torch.no_grad():
        assert relative_error(new(x), model(x)) < 1e-10
    assert count_params(new) < count_params(pcn_transform(model, [x], keep="d12", grow=True)[0])


def test_prune_outputs_slices_a_vgg_chain_through_batch_norm_and_pooling() -> None:
    model = with_bn_statistics(vgg11()).eval()
    x = torch.randn(4, 3, 32, 32)
    new, report = pcn_transform(model, [x], keep="f0.5", prune_outputs=True, grow=True)
    assert new.layers[0].conv.out_channels == 32 and new.layers[0].bn.num_features == 32
    assert new.layers[0].bn.running_mean.shape == (32,)
    assert new.fc.basis.V.shape == (256, 256)  # the last conv's 512 outputs pruned to k
    assert report.layers["fc"].pruned == "layers.11.conv"
    assert new(x).shape == (4, 10)
    unpruned, _ = pcn_transform(model, [x], keep="f0.5", grow=True)
    assert count_params(new) < count_params(unpruned)


def test_prune_outputs_on_a_residual_network_names_the_unsafe_layer() -> None:
    with pytest.raises(ParamError, match=r"blocks\.0\.conv1: its input") as info:
        pcn_transform(resnet20_width2(), [torch.randn(2, 3, 32, 32)], prune_outputs=True)
    assert info.value.key == "prune_outputs"


def test_params_validate_rules_and_check_the_transform_epoch() -> None:
    with pytest.raises(ValidationError, match="invalid keep rule 'q3'"):
        PCNParams(keep="q3")
    with pytest.raises(ValidationError, match=r"layers\['fc'\]: invalid keep rule 'f2'"):
        PCNParams(layers={"fc": "f2"})
    recipe = Recipe(epochs=3)
    PCN().check(PCNParams(at_epoch=3), recipe)
    PCN().check(PCNParams(at_epoch=0), recipe)
    with pytest.raises(ParamError, match=r"must be ≤ recipe.epochs \(got 4\)") as info:
        PCN().check(PCNParams(at_epoch=4), recipe)
    assert info.value.key == "at_epoch"


def test_suite_error_points_at_the_transform_epoch(host, write_suite) -> None:
    text = BASE_SUITE.replace("  - dense", "  - name: pcn\n    params: {at_epoch: [1, 5]}")
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(text), host)
    assert info.value.path == "methods[0].params.at_epoch[1]"
    assert "must be ≤ recipe.epochs (got 5)" in info.value.message


def test_validation_rejects_a_layers_pattern_matching_no_layer(host, write_suite) -> None:
    text = BASE_SUITE.replace(
        "  - dense", "  - name: pcn\n    params: {at_epoch: 1, layers: {fcc: null}}"
    )
    path = write_suite(text, name="typo.yaml")
    with pytest.raises(SuiteError) as info:
        load_suite(path, host)
    message = str(info.value)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", message), message
    assert info.value.path == "methods[0].params.layers"
    assert "'fcc'" in message and "(layers: fc1, fc)" in message


def test_figures_come_from_the_pcn_figures_module(monkeypatch) -> None:
    import pcnbench_plugins.pcn.figures as figures

    calls = []
    monkeypatch.setattr(figures, "pcn_figures", lambda data, colors: calls.append(colors) or [])
    assert PCN().figures(None, {"pcn": "#123456"}) == []
    assert calls == [{"pcn": "#123456"}]


def small_session(epochs: int = 3) -> Session:
    data = Synthetic().load(Synthetic.Params(n_train=96, n_test=48, shape=(1, 8, 8)))
    torch.manual_seed(0)
    model = CNN().build(CNN.Params(width=16), DataInfo((1, 8, 8), 4))
    recipe = Recipe(epochs=epochs, batch_size=32, optimizer={"lr": 0.05}, eval_every=0)
    return Session(model, data, recipe, seed=0, measure_inference=False)


@pytest.mark.parametrize("at_epoch", [0, 1])
def test_method_records_a_smaller_model_with_both_accuracies(at_epoch: int) -> None:
    session = small_session()
    # The classifier reads 512 features into 4 classes: a 512×k basis would outgrow it.
    params = PCNParams(at_epoch=at_epoch, keep="f0.25", calibration=64, layers={"fc": None})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here deserves a warning
        PCN().run(session, params)
    (row,) = session.results
    assert row["params"] < row["dense_params"] and row["macs"] < row["dense_macs"]
    assert 0 <= row["acc_before_transform"] <= 1 and 0 <= row["acc_after_transform"] <= 1
    assert row["transform_epoch"] == at_epoch and row["epochs_trained"] == 3
    (layer,) = row["pcn_layers"]  # the CNN's second conv
    assert layer["name"] == "conv2" and layer["d"] == 16 and layer["k"] == 4
    assert layer["samples"] == 64 * 8 * 8 and layer["undersampled"] is False
    assert row["pcn_skipped"] == [
        {"layer": "conv1", "reason": "first layer (reads the network input)"},
        {"layer": "fc", "reason": "excluded by the suite's layer patterns"},
    ]
    # conv2's weight of conv1 (144 + 16), conv2 (4,608 + 32) and fc (2,048 + 4).
    assert row["coverage"] == pytest.approx(4_608 / 6_852)
    assert {r["tensor"]: r["reason"] for r in row["left_dense"] if "bias" not in r["tensor"]} == {
        "fc.weight": "excluded by the suite's layer patterns",
        "conv1.weight": "first layer (reads the network input)",
    }
    phases = [(p.name, p.kind) for p in session.phases]
    assert ("pcn_transform", "transform") in phases
    assert isinstance(session.model.conv2, PCAConv2d)
    assert isinstance(session.model.conv2.basis, PCABasis)
    trained = {id(p) for g in session.optimizer.param_groups for p in g["params"]}
    assert id(session.model[2].weight) in trained and id(session.model[2].basis.V) not in trained
    assert math.isfinite(row["accuracy"])


def test_transform_right_after_training_keeps_accuracy_at_full_rank() -> None:
    session = small_session(epochs=2)
    PCN().run(session, PCNParams(at_epoch=2, keep="f1.0", calibration=96, grow=True))
    (row,) = session.results
    assert row["acc_after_transform"] == pytest.approx(row["acc_before_transform"])
    assert row["accuracy"] == pytest.approx(row["acc_after_transform"])


def test_macs_by_hand_on_the_quickstart_mlp() -> None:
    torch.manual_seed(0)
    model = MLP().build(MLP.Params(width=512, depth=2), DataInfo((1, 8, 8), 10))
    x = torch.rand(600, 1, 8, 8)
    new, report = pcn_transform(model, [x[:300], x[300:]], keep="d64", layers={"fc": None})
    assert {name: (layer.d, layer.k) for name, layer in report.layers.items()} == {"fc2": (512, 64)}
    # fc1, fc2's projection Vᵀ and W′, fc: the offset −Vᵀμ is a constant, not computed per pass.
    assert count_macs(new, (1, 8, 8)) == 64 * 512 + 512 * 64 + 64 * 512 + 512 * 10 == 103_424
    assert count_macs(model, (1, 8, 8)) == 64 * 512 + 512 * 512 + 512 * 10
    # fc1; fc2's V, offset, W′, b′; fc.
    assert count_params(new) == 64 * 512 + 512 + 512 * 64 + 64 + 64 * 512 + 512 + 5130


def test_conv_macs_by_hand_count_the_padded_projection() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
    new, _ = pcn_transform(model, [torch.randn(4, 3, 8, 8)], keep="d4")
    first = 3 * 8 * 9 * 8 * 8
    projection = 8 * 4 * 10 * 10  # the 1×1 projection runs on the zero-padded 10×10 input
    assert count_macs(new, (3, 8, 8)) == first + projection + 4 * 6 * 9 * 8 * 8 == 30_848


def undecayed(model: nn.Module, recipe: Recipe) -> set[int]:
    """Ids of the parameters the recipe's optimizer trains without weight decay."""
    groups = build_optimizer(model, recipe).param_groups
    return {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}


def test_bias_added_to_a_bias_free_conv_is_not_decayed() -> None:
    data = Synthetic().load(Synthetic.Params(n_train=64, n_test=32, shape=(1, 8, 8)))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),  # a bias appears where there was none
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 4),
    )
    recipe = Recipe(epochs=1, batch_size=32, optimizer={"lr": 0.5}, weight_decay=0.1)
    session = Session(model, data, recipe, seed=0, measure_inference=False)
    new, report = pcn_transform(
        session.model, session.calibration_batches(64), keep="d4", layers={"6": None}
    )
    assert list(report.layers) == ["2", "4"]
    session.model = new
    added, kept = new[2].bias, new[4].bias
    groups = session.optimizer.param_groups
    (no_decay,) = [g for g in groups if g["weight_decay"] == 0]
    assert [id(p) for p in no_decay["params"]] == [id(added)]
    assert all(g["weight_decay"] == 0.1 for g in groups if g is not no_decay)
    assert added.requires_grad and is_excluded_from_weight_decay(added)
    assert not is_excluded_from_weight_decay(new[2].weight)
    before_added, before_kept = added.detach().clone(), kept.detach().clone()
    assert before_added.abs().min() > 0 and before_kept.abs().min() > 0
    for param in new.parameters():
        param.grad = torch.zeros_like(param)
    session.optimizer.step()
    assert torch.equal(added.detach(), before_added)
    # Zero gradient: SGD moves an ordinary parameter by lr · weight_decay · itself only.
    assert torch.allclose(kept.detach(), before_kept * (1 - 0.5 * 0.1), rtol=1e-6, atol=0)


def test_output_pruning_keeps_an_added_bias_out_of_weight_decay() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(8, 16),
        nn.ReLU(),
        nn.Linear(16, 12, bias=False),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Linear(12, 4),
    )
    x = torch.randn(64, 8)
    new, report = pcn_transform(model, [x], keep="d6", prune_outputs=True, grow=True)
    assert report.layers["6"].pruned == "3"
    bias = new[3].bias  # added by the rewrite of 3, then sliced by pruning for 6
    assert bias.shape == (6,) and new[3].weight.shape == (6, 6)
    assert is_excluded_from_weight_decay(bias) and bias.requires_grad
    assert undecayed(new, Recipe(epochs=1, weight_decay=0.1)) == {id(bias)}


def test_fewer_samples_than_features_warns_and_is_recorded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 3)
    ).double()
    x = torch.randn(39, 4, dtype=torch.float64)
    with pytest.warns(UserWarning) as caught:
        _, report = pcn_transform(model, [x[:20], x[20:]], keep="d4", grow=True)
    assert [str(w.message) for w in caught] == [
        "pcn: 1 layer saw fewer calibration samples than input features (4): only the top "
        "n − 1 components of n samples are determined by the data; calibrate with more samples"
    ]
    rows = {row["name"]: row for row in report.layer_rows()}
    assert (rows["2"]["samples"], rows["2"]["d"], rows["2"]["undersampled"]) == (39, 8, False)
    assert (rows["4"]["samples"], rows["4"]["d"], rows["4"]["undersampled"]) == (39, 40, True)
    # As many samples as features: n − 1 = d − 1 directions and their complement, all determined.
    x = torch.randn(40, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, report = pcn_transform(model, [x], keep="d4", grow=True)
    assert report.layers["4"].samples == 40 and not report.layers["4"].undersampled


def test_conv_inputs_count_every_position_as_a_sample_for_the_warning() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 40, 1),
        nn.ReLU(),
        nn.Conv2d(40, 2, 1),
        nn.ReLU(),
        nn.Conv2d(2, 3, 3),  # one basis shared by nothing: its 2 channels are plenty
    )
    with pytest.warns(UserWarning) as caught:
        _, report = pcn_transform(model, [torch.randn(2, 1, 4, 4)], keep="d2", grow=True)
    assert [str(w.message) for w in caught] == [
        "pcn: 1 layer saw fewer calibration samples than input features (4): only the top "
        "n − 1 components of n samples are determined by the data; calibrate with more samples"
    ]
    assert {name: (layer.samples, layer.undersampled) for name, layer in report.layers.items()} == {
        "2": (2 * 4 * 4, False),
        "4": (2 * 4 * 4, True),
        "6": (2 * 4 * 4, False),
    }


# An independent PCN, straight from the method's description (docs/methods.md), in numpy and
# plain torch ops: nothing from the plugin but the network it returns is compared against it.


def layer_inputs(model: nn.Sequential, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """The input of every conv/linear of a Sequential, by index."""
    seen = {}
    for index, module in enumerate(model):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            seen[index] = x
        x = module(x)
    return seen


def reference_pcn(
    model: nn.Sequential, calibration: torch.Tensor, k_of: Callable[[int], int]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward pass of `model` with every conv/linear but the first rewritten at rank k."""
    with torch.no_grad():
        inputs = layer_inputs(model, calibration)
    rewritten = {}
    for index in sorted(inputs)[1:]:
        module, x = model[index], inputs[index].numpy()
        rows = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.ndim == 4 else x
        mu = rows.mean(0)
        values, vectors = np.linalg.eigh(np.cov(rows, rowvar=False))
        v = vectors[:, np.argsort(values)[::-1][: k_of(rows.shape[1])]]
        w = module.weight.detach().numpy()
        b = np.zeros(w.shape[0]) if module.bias is None else module.bias.detach().numpy()
        if w.ndim == 4:  # W·V at every kernel position, b + Σ_positions W·μ
            new_w = np.einsum("ochw,ck->okhw", w, v)
            new_b = b + np.einsum("ochw,c->o", w, mu)
        else:
            new_w, new_b = w @ v, b + w @ mu
        rewritten[index] = tuple(torch.from_numpy(a.copy()) for a in (mu, v, new_w, new_b))

    def forward(x: torch.Tensor) -> torch.Tensor:
        for index, module in enumerate(model):
            if index not in rewritten:
                x = module(x)
                continue
            mu, v, w, b = rewritten[index]
            if isinstance(module, nn.Conv2d):
                top, left = module.padding
                padded = F.pad(x, (left, left, top, top))  # zero-pad the raw input
                z = torch.einsum("nchw,ck->nkhw", padded - mu[:, None, None], v)
                x = F.conv2d(z, w, b, stride=module.stride)
            else:
                x = (x - mu) @ v @ w.T + b
        return x

    return forward


def small_convnet() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 10, 3, padding=1, stride=2, bias=False),
        nn.Tanh(),
        nn.Conv2d(10, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )


def small_mlp() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 24), nn.Tanh(), nn.Linear(24, 6)
    )


@pytest.mark.parametrize(
    ("build", "shape", "keep", "k_of", "ks"),
    [
        (small_convnet, (3, 8, 8), "d3", lambda d: min(d, 3), [3, 3, 3]),
        (small_mlp, (20,), "f0.5", lambda d: math.ceil(d / 2), [16, 12]),
    ],
    ids=["convnet_d3", "mlp_f0.5"],
)
def test_partial_rank_pcn_matches_an_independent_implementation(
    build: Callable[[], nn.Sequential],
    shape: tuple[int, ...],
    keep: str,
    k_of: Callable[[int], int],
    ks: list[int],
) -> None:
    model = with_bn_statistics(build()).double().eval()
    g = torch.Generator().manual_seed(5)
    calibration = torch.randn(160, *shape, dtype=torch.float64, generator=g) + 0.3
    x = torch.randn(12, *shape, dtype=torch.float64, generator=g)
    # grow: the reference rewrites every layer, as the paper does.
    new, report = pcn_transform(model, [calibration[:100], calibration[100:]], keep=keep, grow=True)
    assert [layer.k for layer in report.layers.values()] == ks
    assert all(layer.k < layer.d for layer in report.layers.values())
    expected = reference_pcn(model, calibration, k_of)
    with torch.no_grad():
        got, want, dense = new.eval()(x), expected(x), model(x)
    assert relative_error(got, want) < 1e-10
    assert relative_error(got, dense) > 1e-2  # partial rank: a different function
