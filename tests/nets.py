"""Small networks and data shared by the pruning tests."""

from __future__ import annotations

import torch
from torch import nn

from pcnbench.api import TensorSplits


def convnet(seed: int = 0) -> nn.Sequential:
    """Two convs (the first with BatchNorm) and a linear head: 36 + 216 + 384 = 636 weights."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 4),
    )


def image_splits(n: int = 48, seed: int = 0) -> TensorSplits:
    """`n` random 1×4×4 training images and 16 test images of 4 classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n + 16, 1, 4, 4, generator=g)
    y = torch.randint(0, 4, (n + 16,), generator=g)
    return TensorSplits(x[:n], y[:n], x[n:], y[n:], (0.5,), (0.25,))


def vision_transformer(
    width: int = 32, heads: int = 2, mlp: int = 64, num_classes: int = 10
) -> nn.Module:
    """torchvision's ViT on 32×32 inputs, 16×16 patches, 2 blocks (42,282 params by default).

    `vit_b_16`'s builder fixes depth and width; the class itself takes any.
    """
    from torchvision.models import VisionTransformer

    return VisionTransformer(
        image_size=32,
        patch_size=16,
        num_layers=2,
        num_heads=heads,
        hidden_dim=width,
        mlp_dim=mlp,
        num_classes=num_classes,
    )
