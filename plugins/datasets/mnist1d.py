"""MNIST-1D (Greydanus & Kobak, ICML 2024): ten 1-D digit templates, regenerated offline.

Made by the `mnist1d` package's generator (`mnist1d.data.make_dataset`), whose default
arguments are those of the published `mnist1d_data.pkl`: 4,000 training and 1,000 test series
of length 40, seed 42. Nothing is downloaded (never `get_dataset`, which fetches the pickle).
Importing the package (it pulls in SciPy and matplotlib) and generating the default 5,000
series take about 0.7 s and 1 s on one CPU core; the arrays are then kept for the rest of the
process, so later loads with the same params cost nothing.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from pcnbench.api import DataInfo, DatasetPlugin, Params, PcnbenchError, TensorSplits

if TYPE_CHECKING:
    import numpy as np

LENGTH = 40  # the generator's `final_seq_length`
CLASSES = 10
MAX_SAMPLES = 100_000  # about 20 s to generate: a typo of a few zeros fails instead of hanging

# Generated arrays by (seed, num_samples, train_split): float32 inputs (N, 1, 40), int64 labels.
_CACHE: dict[tuple[int, int, float], tuple[Any, Any, Any, Any]] = {}
_LOCK = threading.Lock()


class Mnist1dParams(Params):
    """The generator's seed and size; the defaults are the published dataset's."""

    seed: int = Field(42, ge=0, lt=2**32, description="seed of the generator (NumPy's global)")
    num_samples: int = Field(
        5000,
        ge=CLASSES,
        le=MAX_SAMPLES,
        description="series generated, a multiple of 10 (as many of each digit)",
    )
    train_split: float = Field(
        0.8, gt=0.0, lt=1.0, description="fraction of the shuffled series used for training"
    )

    @field_validator("num_samples")
    @classmethod
    def _whole_classes(cls, value: int) -> int:
        # The generator makes num_samples // 10 series per digit and drops the rest silently.
        if value % CLASSES:
            raise ValueError(
                f"num_samples must be a multiple of {CLASSES} (the generator makes"
                f" num_samples // {CLASSES} series of each digit); got {value}"
            )
        return value

    @field_validator("train_split")
    @classmethod
    def _both_sides(cls, value: float, info: ValidationInfo) -> float:
        n = info.data.get("num_samples")
        if n is not None and not 0 < split_index(n, value) < n:
            raise ValueError(
                f"train_split {value:g} of {n} series leaves {split_index(n, value)} for"
                " training; each side needs at least one"
            )
        return value


def split_index(num_samples: int, train_split: float) -> int:
    """Training series out of `num_samples`, rounded down as the generator rounds."""
    return int(num_samples * train_split)


class Mnist1d(DatasetPlugin):
    """MNIST-1D: 1×40 series of ten digit templates, padded, sheared, translated, noised."""

    name = "mnist1d"
    Params = Mnist1dParams

    def info(self, params: Mnist1dParams) -> DataInfo:
        """One sample is 1×40; ten classes."""
        return DataInfo(input_shape=(1, LENGTH), num_classes=CLASSES)

    def load(self, params: Mnist1dParams) -> TensorSplits:
        """Generate the series (once per process and params) and split them as published.

        The generator standardizes the whole dataset, training and test series together
        ((x − mean) / std): those are the published values, so the session normalizes with
        mean 0 and std 1 and the model sees the published arrays, as float32.
        """
        key = (params.seed, params.num_samples, params.train_split)
        with _LOCK:  # one generation per key even when threads load at once
            if key not in _CACHE:
                _CACHE[key] = _generate(params)
            x_train, y_train, x_test, y_test = _CACHE[key]
        return TensorSplits(x_train, y_train, x_test, y_test, mean=(0.0,), std=(1.0,))


def generate_arrays(params: Mnist1dParams) -> dict[str, np.ndarray]:
    """`make_dataset`'s output for `params`, leaving NumPy's and Python's global RNGs as found.

    `make_dataset` reseeds both global generators (`mnist1d.utils.set_seed`) and draws from
    NumPy's; restoring them keeps a cell's own seeded streams where they were.
    """
    import random

    import numpy as np

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise PcnbenchError(
            f"mnist1d: the generator's package is not installed here (pip install mnist1d): {exc}"
        ) from exc
    args = get_dataset_args()
    args.seed = params.seed
    args.num_samples = params.num_samples
    args.train_split = params.train_split
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(args)  # never get_dataset: that downloads the pickle
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def _generate(params: Mnist1dParams) -> tuple[Any, Any, Any, Any]:
    import numpy as np
    import torch

    data = generate_arrays(params)

    def series(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return series(data["x"]), labels(data["y"]), series(data["x_test"]), labels(data["y_test"])
