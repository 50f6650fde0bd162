"""scikit-learn's bundled 8×8 handwritten digits: small, offline, and fast enough for CI."""

from __future__ import annotations

from pydantic import Field

from pcnbench.api import DataInfo, DatasetPlugin, Params, TensorSplits

from .stats import channel_stats


class DigitsParams(Params):
    """How the 1,797 digits are split into training and test sets."""

    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="fraction held out for testing")
    split_seed: int = Field(0, description="seed of the stratified train/test split")


class Digits(DatasetPlugin):
    """`sklearn.datasets.load_digits`: 1×8×8 grey images, pixel values 0..16 scaled to [0, 1]."""

    name = "digits"
    Params = DigitsParams

    def info(self, params: DigitsParams) -> DataInfo:
        """One sample is 1×8×8; ten classes."""
        return DataInfo(input_shape=(1, 8, 8), num_classes=10)

    def load(self, params: DigitsParams) -> TensorSplits:
        """Load the digits and split them, stratified by class, with `split_seed`.

        The split is sklearn's `train_test_split(stratify=y, random_state=split_seed)`, which
        draws from `numpy.random.RandomState(split_seed)`: the same seed gives the same split.
        """
        import numpy as np
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
        y = torch.from_numpy(digits.target).to(torch.int64)
        train_idx, test_idx = train_test_split(
            np.arange(len(y)),
            test_size=params.test_fraction,
            random_state=params.split_seed,
            stratify=digits.target,
        )
        mean, std = channel_stats(x[train_idx])
        return TensorSplits(
            x_train=x[train_idx],
            y_train=y[train_idx],
            x_test=x[test_idx],
            y_test=y[test_idx],
            mean=mean,
            std=std,
        )
