"""The CIFAR ResNet network modules (torch), imported when a ResNet is first built."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .openlth_init import openlth_init

__all__ = ["Block", "CifarResNet", "PadShortcut"]


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
