"""Small networks for small data: a multilayer perceptron (plain or residual), a two-conv CNN."""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pcnbench.api import DataInfo, ModelPlugin, ParamError, Params

from .shapes import image_shape

if TYPE_CHECKING:
    from torch import nn


class MLPParams(Params):
    """`depth` hidden layers of `width` units each."""

    width: int = Field(default=256, gt=0, description="units in each hidden layer")
    depth: int = Field(default=2, ge=1, description="hidden layers (fc1 … fcN)")
    residual: bool = Field(
        default=False,
        description="hidden layers after the first add their input to their output:"
        " h + relu(fc(h)), as MNIST-1D's MLPBase",
    )


class MLP(ModelPlugin):
    """Flatten, then `depth` × (Linear + ReLU) named fc1, fc2, ..., then a Linear head `fc`.

    With `residual`, fc2 … fcN are residual (h + relu(fcᵢ(h))): width 100 and depth 2 on
    1×40 series is MNIST-1D's MLPBase, 15,210 parameters for ten classes.
    """

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
        if params.residual:
            return _residual_mlp()(layers)
        # the plain MLP stays a Sequential: the same modules, ids and results as before
        return nn.Sequential(OrderedDict(layers))


@functools.cache
def _residual_mlp() -> type[nn.Module]:
    # Defined on first use so that registering and validating need no torch import; module
    # `__getattr__` below makes it `pcnbench_plugins.models.mlp.ResidualMLP`, so it pickles.
    import torch
    from torch import nn

    class ResidualMLP(nn.Module):
        """flatten, relu1(fc1(x)), then h + reluᵢ(fcᵢ(h)) for i = 2 … depth, then the head fc."""

        def __init__(self, layers: dict[str, nn.Module]) -> None:
            super().__init__()
            for name, module in layers.items():
                self.add_module(name, module)
            self.depth = sum(name.startswith("relu") for name in layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """The logits: every hidden layer after the first adds its input to its output."""
            # looked up by name on every call, so a module a method swapped in (fc2 factorized,
            # say) is the one that runs
            h = self.relu1(self.fc1(self.flatten(x)))
            for i in range(2, self.depth + 1):
                h = h + getattr(self, f"relu{i}")(getattr(self, f"fc{i}")(h))
            return self.fc(h)

    ResidualMLP.__qualname__ = "ResidualMLP"
    return ResidualMLP


def __getattr__(name: str) -> Any:
    """`ResidualMLP`, the residual MLP's module class, made (importing torch) on first use."""
    if name == "ResidualMLP":
        return _residual_mlp()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
