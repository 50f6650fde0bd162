"""scikit-learn's bundled 8×8 handwritten digits: small, offline, and fast enough for CI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from pcnbench.api import DataInfo, DatasetPlugin, Params, PcnbenchError, TensorSplits

from .stats import channel_stats

if TYPE_CHECKING:
    import numpy as np


class DigitsParams(Params):
    """How the 1,797 digits are split into training and test sets."""

    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="fraction held out for testing")
    split_seed: int = Field(0, description="seed of the stratified train/test split")


class Digits(DatasetPlugin):
    """scikit-learn's digits: 1×8×8 grey images, pixel values 0..16 scaled to [0, 1]."""

    name = "digits"
    Params = DigitsParams

    def info(self, params: DigitsParams) -> DataInfo:
        """One sample is 1×8×8; ten classes."""
        return DataInfo(input_shape=(1, 8, 8), num_classes=10)

    def load(self, params: DigitsParams) -> TensorSplits:
        """Load the digits and split them, stratified by class, with `split_seed`.

        The split is the one sklearn's `train_test_split(stratify=y, random_state=split_seed)`
        makes (`stratified_split`), drawn from `numpy.random.RandomState(split_seed)`: the
        same seed gives the same split.
        """
        import torch

        images, target = read_digits()
        x = torch.from_numpy(images).to(torch.float32).div_(16.0).unsqueeze(1)
        y = torch.from_numpy(target).to(torch.int64)
        train_idx, test_idx = stratified_split(target, params.test_fraction, params.split_seed)
        train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        mean, std = channel_stats(x[train_idx])
        return TensorSplits(
            x_train=x[train_idx],
            y_train=y[train_idx],
            x_test=x[test_idx],
            y_test=y[test_idx],
            mean=mean,
            std=std,
        )


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as (images n×8×8 float64 of 0..16, labels n int64), as sklearn ships them.

    Read straight from the file scikit-learn bundles (`sklearn/datasets/data/digits.csv.gz`),
    which spares importing scikit-learn itself (about a second: it imports SciPy); where that
    file is not found, `sklearn.datasets.load_digits` reads it.
    """
    import importlib.util

    import numpy as np

    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PcnbenchError(
            "digits: the dataset ships with scikit-learn, which is not installed here"
            " (pip install scikit-learn)"
        )
    for folder in spec.submodule_search_locations or ():
        found = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if found.is_file():
            data = np.loadtxt(found, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: every class split in proportion, shuffled, drawn with `seed`.

    The test set has ⌈test_fraction × n⌉ samples. Each side's per-class counts are the
    proportional share rounded down, plus one for the classes with the largest fractions left
    over (ties drawn at random) until the side is full; the test side takes its share from
    what the training side left. Each class's samples are then shuffled and dealt out, and
    each side is shuffled. Every draw comes from one `numpy.random.RandomState(seed)`, in the
    order scikit-learn's `train_test_split(..., stratify=labels)` makes them, so the split is
    the one it makes (the tests compare the two).
    """
    import numpy as np

    n = len(labels)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2 or min(n_train, n_test) < len(counts):
        raise PcnbenchError(
            f"digits: test_fraction {test_fraction:g} leaves a side of the split with fewer"
            f" samples than the {len(counts)} classes ({n_train} training, {n_test} test)"
        )
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    train_counts = _proportional_counts(counts, n_train, rng)
    test_counts = _proportional_counts(counts - train_counts, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for members, k_train, k_test in zip(by_class, train_counts, test_counts, strict=True):
        shuffled = members.take(rng.permutation(len(members)))
        train.extend(shuffled[:k_train])
        test.extend(shuffled[k_train : k_train + k_test])
    return rng.permutation(train), rng.permutation(test)


def _proportional_counts(counts: np.ndarray, total: int, rng: np.random.RandomState) -> np.ndarray:
    """`total` shared out in proportion to `counts`: floors, then +1 by largest remainder."""
    import numpy as np

    exact = counts / counts.sum() * total
    shares = np.floor(exact)
    missing = int(total - shares.sum())
    left_over = exact - shares
    for value in np.sort(np.unique(left_over))[::-1]:
        if missing <= 0:
            break
        (tied,) = np.where(left_over == value)
        chosen = rng.choice(tied, size=min(len(tied), missing), replace=False)
        shares[chosen] += 1
        missing -= len(chosen)
    return shares.astype(int)
