"""CIFAR VGG-11/13/16/19 with batch norm and a single fc, as OpenLTH's cifar_vgg."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from pcnbench.api import DataInfo, ModelPlugin, ParamError, Params

from .openlth_init import openlth_init
from .shapes import image_shape

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

    depth: int = 16
    width: int = Field(default=1, ge=1)

    @field_validator("depth")
    @classmethod
    def _depth_has_a_plan(cls, depth: int) -> int:
        if depth not in PLANS:
            raise ValueError(f"depth must be one of {', '.join(map(str, PLANS))}; got {depth}")
        return depth


class ConvModule(nn.Module):
    """Conv 3×3 (with bias), batch norm, ReLU; named conv/bn as in OpenLTH."""

    def __init__(self, f_in: int, f_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(f_in, f_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(f_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, bn and relu."""
        return F.relu(self.bn(self.conv(x)))


class CifarVGG(nn.Module):
    """Conv modules and max-pools per `plan`, then global average pool and one fc."""

    def __init__(
        self, in_channels: int, num_classes: int, plan: list[int | str], width: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        filters = in_channels
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = int(spec) * width
                layers.append(ConvModule(filters, out))
                filters = out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(filters, num_classes)
        self.apply(openlth_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, num_classes) logits."""
        x = self.layers(x)
        # On 32×32 inputs this equals OpenLTH's AvgPool2d(2) over the final 2×2 map.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


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
        return CifarVGG(channels, info.num_classes, plan, width=params.width)
