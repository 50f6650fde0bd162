"""CIFAR VGG-11/13/16/19 with batch norm and a single fc, as OpenLTH's cifar_vgg."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from pcnbench.api import DataInfo, ModelPlugin, ParamError, Params

from .shapes import image_shape

if TYPE_CHECKING:
    from torch import nn

_NETS = ("CifarVGG", "ConvModule")  # in cifar_vgg_net: torch loads on first use

# Output channels per conv, "M" a 2×2 max-pool: OpenLTH's plans.
PLANS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512,
    ],
}  # fmt: skip


class VGGParams(Params):
    """`depth` picks the plan (11, 13, 16, 19); `width` multiplies every channel count."""

    depth: int = Field(16, description="VGG plan: 11, 13, 16 or 19")
    width: int = Field(default=1, ge=1, description="multiplies every channel count")

    @field_validator("depth")
    @classmethod
    def _depth_has_a_plan(cls, depth: int) -> int:
        if depth not in PLANS:
            raise ValueError(f"depth must be one of {', '.join(map(str, PLANS))}; got {depth}")
        return depth


class VGG(ModelPlugin):
    """CIFAR VGG: VGG-16 has 14,728,266 parameters on CIFAR-10."""

    name = "vgg"
    Params = VGGParams

    def build(self, params: VGGParams, info: DataInfo) -> nn.Module:
        """Return a fresh VGG-`depth`; the input must survive every 2×2 max-pool."""
        channels, height, width = image_shape(info, f"vgg-{params.depth}")
        plan = PLANS[params.depth]
        pools = plan.count("M")
        if min(height, width) < 2**pools:
            raise ParamError(
                "depth",
                f"VGG-{params.depth} max-pools {pools} times and needs inputs of at least "
                f"{2**pools}×{2**pools}; the dataset gives {height}×{width}",
            )
        from .cifar_vgg_net import CifarVGG

        return CifarVGG(channels, info.num_classes, plan, width=params.width)


def __getattr__(name: str) -> Any:
    """The network modules, from `cifar_vgg_net` (importing torch) on first use."""
    if name in _NETS:
        from . import cifar_vgg_net

        return getattr(cifar_vgg_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
