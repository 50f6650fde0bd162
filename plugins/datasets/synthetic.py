"""Gaussian class clusters: a tiny, learnable dataset made on the spot, for tests."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from pcnbench.api import DataInfo, DatasetPlugin, Params, TensorSplits

from .stats import channel_stats

if TYPE_CHECKING:
    import numpy as np
    import torch

_NOISE = 0.15  # per-pixel std around a class center; centers differ by about 0.25 per pixel


class SyntheticParams(Params):
    """Sizes, sample shape (C, H, W), class count and seed of the generated data."""

    n_train: int = Field(512, ge=1, description="training samples")
    n_test: int = Field(128, ge=1, description="test samples")
    shape: tuple[int, int, int] = Field(
        (1, 8, 8), description="one sample's shape (C, H, W); each at least 1"
    )
    classes: int = Field(4, ge=2, description="classes, one cluster each")
    seed: int = Field(0, description="seed of the class centers and samples")

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(shape) < 1:
            raise ValueError(f"every dimension must be at least 1, got {list(shape)}")
        return shape


class Synthetic(DatasetPlugin):
    """One random center in [0.2, 0.8]^D per class, samples scattered around it, clipped to [0, 1].

    Deterministic given `seed`; the test set does not change when `n_train` does.
    """

    name = "synthetic"
    Params = SyntheticParams

    def info(self, params: SyntheticParams) -> DataInfo:
        """Samples shaped `shape`, `classes` classes."""
        return DataInfo(input_shape=tuple(params.shape), num_classes=params.classes)

    def load(self, params: SyntheticParams) -> TensorSplits:
        """Generate the training and test sets from the same class centers."""
        import numpy as np  # here: registering and validating need no NumPy

        dim = math.prod(params.shape)
        # One independent stream per purpose, so changing one size leaves the other draws alone.
        centers = np.random.default_rng([params.seed, 0]).uniform(0.2, 0.8, (params.classes, dim))
        x_train, y_train = _sample(centers, params.n_train, np.random.default_rng([params.seed, 1]))
        x_test, y_test = _sample(centers, params.n_test, np.random.default_rng([params.seed, 2]))
        shape = (-1, *params.shape)
        x_train, x_test = x_train.reshape(shape), x_test.reshape(shape)
        mean, std = channel_stats(x_train)
        return TensorSplits(x_train, y_train, x_test, y_test, mean, std)


def _sample(
    centers: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch

    # Balanced labels in shuffled order, each sample its center plus Gaussian noise.
    labels = rng.permutation(np.arange(n) % len(centers))
    x = centers[labels] + rng.normal(0.0, _NOISE, (n, centers.shape[1]))
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
