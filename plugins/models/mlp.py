"""Small networks for small data: a multilayer perceptron and a two-conv CNN."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING

from pydantic import Field

from pcnbench.api import DataInfo, ModelPlugin, ParamError, Params

from .shapes import image_shape

if TYPE_CHECKING:
    from torch import nn


class MLPParams(Params):
    """`depth` hidden layers of `width` units each."""

    width: int = Field(default=256, gt=0, description="units in each hidden layer")
    depth: int = Field(default=2, ge=1, description="hidden layers (fc1 … fcN)")


class MLP(ModelPlugin):
    """Flatten, then `depth` × (Linear + ReLU) named fc1, fc2, ..., then a Linear head `fc`."""

    name = "mlp"
    Params = MLPParams

    def build(self, params: MLPParams, info: DataInfo) -> nn.Module:
        """Return a fresh MLP over the flattened input."""
        from torch import nn

        # named layers (fc1, fc2, ..., fc for the head) so suites can select them by pattern
        layers: dict[str, nn.Module] = {"flatten": nn.Flatten()}
        features = math.prod(info.input_shape)
        for i in range(1, params.depth + 1):
            layers[f"fc{i}"] = nn.Linear(features, params.width)
            layers[f"relu{i}"] = nn.ReLU()
            features = params.width
        layers["fc"] = nn.Linear(features, info.num_classes)
        return nn.Sequential(OrderedDict(layers))


class CNNParams(Params):
    """`width` channels in the first conv, twice that in the second."""

    width: int = Field(default=32, gt=0, description="channels of conv1; conv2 has twice as many")


class CNN(ModelPlugin):
    """Conv3×3-ReLU, Conv3×3-ReLU, 2×2 max-pool, Linear: for 8×8 digits up to 32×32 images."""

    name = "cnn"
    Params = CNNParams

    def build(self, params: CNNParams, info: DataInfo) -> nn.Module:
        """Return a fresh small CNN sized for `info`'s images."""
        from torch import nn

        channels, height, width = image_shape(info, "cnn")
        if min(height, width) < 2:
            raise ParamError(
                None, f"cnn max-pools once and needs inputs of at least 2×2; got {height}×{width}"
            )
        w = params.width
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(channels, w, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(w, 2 * w, 3, padding=1),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc=nn.Linear(2 * w * (height // 2) * (width // 2), info.num_classes),
            )
        )
