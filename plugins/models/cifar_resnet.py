"""CIFAR ResNet-(6n+2) of He et al. 2016, laid out and initialized as OpenLTH's cifar_resnet."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from pcnbench.api import DataInfo, ModelPlugin, Params

from .openlth_init import openlth_init
from .shapes import image_shape


class ResNetParams(Params):
    """`depth` = 6n+2 layers, `width` multiplies the 16/32/64 channels, `shortcut` A or B."""

    depth: int = 20
    width: int = Field(default=1, ge=1)
    shortcut: Literal["A", "B"] = "B"

    @field_validator("depth")
    @classmethod
    def _depth_is_6n_plus_2(cls, depth: int) -> int:
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); got {depth}")
        return depth


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x[:, :, ::2, ::2] with `extra_channels` zero channels appended."""
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra_channels))


class Block(nn.Module):
    """Basic block: conv-bn-relu-conv-bn plus shortcut, then relu."""

    def __init__(self, f_in: int, f_out: int, downsample: bool, shortcut: str) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut: nn.Module
        if not downsample and f_in == f_out:
            # An empty Sequential is the identity, as in OpenLTH, so state_dict keys match.
            self.shortcut = nn.Sequential()
        elif shortcut == "A":
            self.shortcut = PadShortcut(f_out - f_in)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv, three stages of `blocks_per_stage` blocks (16w, 32w, 64w), avg pool, fc."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks_per_stage: int,
        width: int = 1,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        plan = [16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(in_channels, plan[0], 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(plan[0])
        blocks = []
        current = plan[0]
        for stage, filters in enumerate(plan):
            for index in range(blocks_per_stage):
                blocks.append(Block(current, filters, stage > 0 and index == 0, shortcut))
                current = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(plan[-1], num_classes)
        self.apply(openlth_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, num_classes) logits."""
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        # Adaptive rather than OpenLTH's fixed-size pool, so any input size works.
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class ResNet(ModelPlugin):
    """CIFAR ResNet-(6n+2): ResNet-20 has 272,474 parameters on CIFAR-10."""

    name = "resnet"
    Params = ResNetParams

    def build(self, params: ResNetParams, info: DataInfo) -> nn.Module:
        """Return a fresh ResNet-`depth` for `info`'s images and classes."""
        channels, _, _ = image_shape(info, f"resnet-{params.depth}")
        return CifarResNet(
            channels,
            info.num_classes,
            blocks_per_stage=(params.depth - 2) // 6,
            width=params.width,
            shortcut=params.shortcut,
        )
