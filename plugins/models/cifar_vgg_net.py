"""The CIFAR VGG network modules (torch), imported when a VGG is first built."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .openlth_init import openlth_init

__all__ = ["CifarVGG", "ConvModule"]


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
