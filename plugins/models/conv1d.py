"""A small 1-D CNN for series such as MNIST-1D: the paper's `ConvBase`."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from pydantic import Field

from pcnbench.api import DataInfo, ModelPlugin, ParamError, Params

if TYPE_CHECKING:
    from torch import nn

# (kernel, stride, padding) of conv1, conv2, conv3, as MNIST-1D's ConvBase has them
_CONVS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


class CNN1dParams(Params):
    """`channels` in every conv layer."""

    channels: int = Field(default=25, gt=0, description="channels of conv1, conv2 and conv3")


def conv_lengths(length: int) -> list[int]:
    """The series' length after each conv: 40 → 19 → 10 → 5."""
    lengths = []
    for kernel, stride, padding in _CONVS:
        length = (length + 2 * padding - kernel) // stride + 1
        lengths.append(length)
    return lengths


# the shortest series every conv still maps to at least one position (3)
SHORTEST = next(n for n in range(1, 64) if min(conv_lengths(n)) >= 1)


class CNN1d(ModelPlugin):
    """Three strided Conv1d + ReLU (kernels 5, 3, 3; stride 2), flatten, Linear: MNIST-1D's CNN.

    On 1×40 series with 25 channels and ten classes it has the paper's 5,210 parameters.
    """

    name = "cnn1d"
    Params = CNN1dParams

    def build(self, params: CNN1dParams, info: DataInfo) -> nn.Module:
        """Return a fresh 1-D CNN for inputs shaped (channels, length)."""
        from torch import nn

        if len(info.input_shape) != 2:
            raise ParamError(
                None,
                "cnn1d expects series shaped (channels, length); "
                f"the dataset gives {tuple(info.input_shape)}",
            )
        in_channels, length = info.input_shape
        if min(conv_lengths(length)) < 1:
            raise ParamError(
                None, f"cnn1d needs series of length at least {SHORTEST}; got {length}"
            )
        c = params.channels
        layers: dict[str, nn.Module] = {}
        channels = in_channels
        for i, (kernel, stride, padding) in enumerate(_CONVS, start=1):
            layers[f"conv{i}"] = nn.Conv1d(channels, c, kernel, stride=stride, padding=padding)
            layers[f"relu{i}"] = nn.ReLU()
            channels = c
        layers["flatten"] = nn.Flatten()
        layers["fc"] = nn.Linear(c * conv_lengths(length)[-1], info.num_classes)
        return nn.Sequential(OrderedDict(layers))
