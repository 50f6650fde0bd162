"""CIFAR ResNet-(6n+2) of He et al. 2016, laid out and initialized as OpenLTH's cifar_resnet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from pcnbench.api import DataInfo, ModelPlugin, Params

from .shapes import image_shape

if TYPE_CHECKING:
    from torch import nn

_NETS = ("Block", "CifarResNet", "PadShortcut")  # in cifar_resnet_net: torch loads on first use


class ResNetParams(Params):
    """`depth` = 6n+2 layers, `width` multiplies the 16/32/64 channels, `shortcut` A or B."""

    depth: int = Field(20, description="layers, 6n+2: 8, 14, 20, 32, 44, 56, 110, …")
    width: int = Field(default=1, ge=1, description="multiplies the 16/32/64 channels")
    shortcut: Literal["A", "B"] = Field(
        "B", description="where a block changes shape: A zero-pads, B a 1×1 conv and BN"
    )

    @field_validator("depth")
    @classmethod
    def _depth_is_6n_plus_2(cls, depth: int) -> int:
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); got {depth}")
        return depth


class ResNet(ModelPlugin):
    """CIFAR ResNet-(6n+2): ResNet-20 has 272,474 parameters on CIFAR-10."""

    name = "resnet"
    Params = ResNetParams

    def build(self, params: ResNetParams, info: DataInfo) -> nn.Module:
        """Return a fresh ResNet-`depth` for `info`'s images and classes."""
        from .cifar_resnet_net import CifarResNet

        channels, _, _ = image_shape(info, f"resnet-{params.depth}")
        return CifarResNet(
            channels,
            info.num_classes,
            blocks_per_stage=(params.depth - 2) // 6,
            width=params.width,
            shortcut=params.shortcut,
        )


def __getattr__(name: str) -> Any:
    """The network modules, from `cifar_resnet_net` (importing torch) on first use."""
    if name in _NETS:
        from . import cifar_resnet_net

        return getattr(cifar_resnet_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
