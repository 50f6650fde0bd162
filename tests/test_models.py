"""The built-in model families: reference parameter counts, shapes, parameter errors."""

from __future__ import annotations

import math
from importlib.metadata import entry_points

import pluggy
import pytest
import torch
from pydantic import ValidationError
from torch import nn

import pcnbench_plugins.models as models_plugin
from pcnbench import hookspecs
from pcnbench.api import DataInfo, Family, ModelPlugin, ParamError
from pcnbench_plugins.models.cifar_resnet import ResNet
from pcnbench_plugins.models.cifar_vgg import VGG
from pcnbench_plugins.models.mlp import CNN, MLP
from pcnbench_plugins.models.torchvision_models import TorchvisionModel

CIFAR = DataInfo(input_shape=(3, 32, 32), num_classes=10)
DIGITS = DataInfo(input_shape=(1, 8, 8), num_classes=10)


def count(model: nn.Module) -> int:
    """Number of parameters, as the reference figures count them."""
    return sum(p.numel() for p in model.parameters())


def build(plugin: ModelPlugin, info: DataInfo = CIFAR, *, meta: bool = True, **params) -> nn.Module:
    """Validate `params` like the core does and build; on the meta device unless told not to."""
    validated = plugin.Params.model_validate(params)
    if not meta:
        return plugin.build(validated, info)
    with torch.device("meta"):
        return plugin.build(validated, info)


def registered() -> list[ModelPlugin | Family]:
    """Everything the models plugin registers, in order."""
    out: list[ModelPlugin | Family] = []
    models_plugin.register_models(out.append)
    return out


def test_resnet20_has_272474_params() -> None:
    assert count(build(ResNet())) == 272_474


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"width": 2}, 1_084_586),
        ({"width": 4}, 4_327_754),
        ({"width": 8}, 17_289_866),
        ({"depth": 56}, 855_770),
        ({"depth": 110}, 1_730_714),
        ({"shortcut": "A"}, 269_722),
    ],
    ids=["w2-1084586", "w4-4327754", "w8-17289866", "r56-855770", "r110-1730714", "A-269722"],
)
def test_resnet_variants_have_openlth_param_counts(params: dict, expected: int) -> None:
    assert count(build(ResNet(), **params)) == expected


def test_vgg16_has_14728266_params() -> None:
    assert count(build(VGG())) == 14_728_266


def test_vgg19_has_20040522_params() -> None:
    assert count(build(VGG(), depth=19)) == 20_040_522


def test_vgg_width_2_doubles_every_channel() -> None:
    model = build(VGG(), depth=11, width=2)
    assert model.fc.in_features == 1024
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][:3] == [
        128,
        256,
        512,
    ]


def test_mlp_defaults_have_two_hidden_layers_of_256() -> None:
    # 64·256+256 + 256·256+256 + 256·10+10
    assert count(build(MLP(), DIGITS)) == 85_002


def test_cnn_on_digits_has_29066_params() -> None:
    # conv 1→32: 320; conv 32→64: 18,496; linear 64·4·4→10: 10,250
    assert count(build(CNN(), DIGITS)) == 29_066


@pytest.mark.parametrize("plugin", [MLP(), CNN(), ResNet()], ids=lambda p: p.name)
def test_digit_models_map_1x8x8_to_10_logits(plugin: ModelPlugin) -> None:
    torch.manual_seed(0)
    model = build(plugin, DIGITS, meta=False)
    out = model(torch.rand(4, 1, 8, 8))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()


def test_resnet_option_a_handles_odd_sizes_and_has_no_shortcut_params() -> None:
    model = build(ResNet(), DataInfo((3, 7, 5), 4), meta=False, depth=8, shortcut="A")
    assert model(torch.rand(2, 3, 7, 5)).shape == (2, 4)
    assert count(model.blocks[1].shortcut) == 0
    # option B's only extra parameters are the two downsampling shortcuts
    option_b = build(ResNet(), DataInfo((3, 7, 5), 4), depth=8)
    assert count(option_b) - count(model) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_vgg11_maps_3x32x32_to_10_logits() -> None:
    model = build(VGG(), meta=False, depth=11)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_cnn_maps_3x32x32_to_10_logits() -> None:
    model = build(CNN(), meta=False, width=8)
    assert model[-1].in_features == 16 * 16 * 16
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_uses_openlth_init() -> None:
    torch.manual_seed(0)
    model = build(ResNet(), meta=False, width=4)
    conv = model.blocks[-1].conv2
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert 0.0 <= model.bn.weight.min().item() <= model.bn.weight.max().item() <= 1.0
    assert model.bn.weight.std().item() > 0.1  # uniform, not the constant 1
    assert model.bn.bias.abs().sum().item() == 0.0


def test_two_builds_are_independent_random_networks() -> None:
    a = build(ResNet(), DIGITS, meta=False, depth=8)
    b = build(ResNet(), DIGITS, meta=False, depth=8)
    assert not torch.equal(a.fc.weight, b.fc.weight)


@pytest.mark.parametrize("depth", [21, 2, 0, 19])
def test_resnet_rejects_depth_not_6n_plus_2_naming_the_value(depth: int) -> None:
    with pytest.raises(ValidationError, match=rf"depth must be 6n\+2 .*; got {depth} \[") as info:
        ResNet.Params(depth=depth)
    assert info.value.errors()[0]["loc"] == ("depth",)


def test_vgg_rejects_depth_without_a_plan_naming_the_value() -> None:
    with pytest.raises(ValidationError, match="depth must be one of 11, 13, 16, 19; got 12"):
        VGG.Params(depth=12)


@pytest.mark.parametrize(
    ("plugin", "params"),
    [
        (ResNet(), {"width": 0}),
        (MLP(), {"width": 0}),
        (MLP(), {"depth": 0}),
        (CNN(), {"width": -1}),
    ],
)
def test_nonpositive_sizes_are_rejected(plugin: ModelPlugin, params: dict) -> None:
    with pytest.raises(ValidationError) as info:
        plugin.Params.model_validate(params)
    assert info.value.errors()[0]["loc"] == (next(iter(params)),)


def test_params_reject_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(ValidationError, match="depht"):
        ResNet.Params(depht=20)
    params = ResNet.Params()
    with pytest.raises(ValidationError):
        params.depth = 32  # type: ignore[misc]
    assert params.depth == 20


def test_vgg_rejects_inputs_smaller_than_16x16() -> None:
    with pytest.raises(ParamError) as info:
        build(VGG(), DIGITS)
    assert info.value.key == "depth"
    assert "at least 16×16" in info.value.message
    assert "8×8" in info.value.message


def test_vgg_accepts_exactly_16x16() -> None:
    model = build(VGG(), DataInfo((3, 16, 16), 5), meta=False, depth=11)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("plugin", [ResNet(), VGG(), CNN()], ids=lambda p: p.name)
def test_image_models_reject_flat_inputs(plugin: ModelPlugin) -> None:
    with pytest.raises(ParamError, match=r"\(channels, height, width\).*\(64,\)") as info:
        build(plugin, DataInfo((64,), 10))
    assert info.value.key is None


def test_mlp_accepts_flat_inputs() -> None:
    model = build(MLP(), DataInfo((20,), 3), meta=False, width=7, depth=1)
    assert model(torch.rand(5, 20)).shape == (5, 3)
    assert count(model) == 20 * 7 + 7 + 7 * 3 + 3


def test_torchvision_resnet18_builds_for_10_classes() -> None:
    model = build(TorchvisionModel("resnet18"), meta=False)
    assert model.fc.out_features == 10
    assert count(model) == 11_181_642
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_torchvision_googlenet_returns_plain_logits_in_training_mode() -> None:
    model = build(TorchvisionModel("googlenet"))
    model.train()
    out = model(torch.empty(2, 3, 64, 64, device="meta"))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 10)


def test_torchvision_rejects_non_rgb_input() -> None:
    with pytest.raises(ParamError, match=r"expects 3-channel images.*1 channel") as info:
        build(TorchvisionModel("resnet18"), DIGITS)
    assert info.value.key is None


def test_torchvision_rejects_imagenet_weights_for_10_classes_without_downloading() -> None:
    with pytest.raises(ParamError, match="predict 1000 classes; the dataset has 10") as info:
        build(TorchvisionModel("resnet18"), weights="IMAGENET1K_V1")
    assert info.value.key == "weights"


def test_torchvision_rejects_unknown_weights_listing_known_ones() -> None:
    with pytest.raises(ParamError, match="no weights 'NOPE'; known: DEFAULT, IMAGENET1K_V1"):
        build(TorchvisionModel("resnet18"), weights="NOPE")


def test_torchvision_reports_unknown_kwargs_under_kwargs() -> None:
    with pytest.raises(ParamError, match="unexpected keyword argument 'foo'") as info:
        build(TorchvisionModel("resnet18"), kwargs={"foo": 1})
    assert info.value.key == "kwargs"


def test_torchvision_kwargs_pass_through_and_cannot_set_num_classes() -> None:
    full = count(build(TorchvisionModel("mobilenet_v2")))
    slim = count(build(TorchvisionModel("mobilenet_v2"), kwargs={"width_mult": 0.5}))
    assert slim < full / 2
    with pytest.raises(ValidationError, match="must not set 'num_classes'"):
        TorchvisionModel.Params(kwargs={"num_classes": 3})


def test_register_models_registers_unique_names_including_torchvision() -> None:
    import torchvision

    *plugins, family = registered()
    names = [plugin.name for plugin in plugins]
    assert names == ["resnet", "vgg", "mlp", "cnn", "cnn1d"]
    assert all(isinstance(plugin, ModelPlugin) for plugin in plugins)
    assert isinstance(family, Family) and family.name == "torchvision:*"
    members = family.names()
    assert "torchvision:resnet18" in members
    assert len(members) == len(set(members))
    assert len(members) == len(torchvision.models.list_models(torchvision.models))
    model = family.get("torchvision:resnet18")
    assert isinstance(model, TorchvisionModel) and model.name == "torchvision:resnet18"


def test_models_plugin_loads_through_pluggy_and_its_entry_point() -> None:
    entry = next(e for e in entry_points(group="pcnbench") if e.name == "models")
    manager = pluggy.PluginManager("pcnbench")
    manager.add_hookspecs(hookspecs)
    manager.register(entry.load())
    registered: list[ModelPlugin | Family] = []
    manager.hook.register_models(register=registered.append)
    names = [plugin.name for plugin in registered]
    assert names.count("resnet") == 1
    (family,) = (p for p in registered if isinstance(p, Family))
    assert "torchvision:vit_b_16" in family.names()
