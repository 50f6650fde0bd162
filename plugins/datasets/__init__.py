"""Built-in datasets: digits, MNIST-1D, synthetic, the torchvision sets and ImageNet folders."""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl

from .digits import Digits
from .imagenet import Imagenet
from .mnist1d import Mnist1d
from .synthetic import Synthetic
from .torchvision_sets import Cifar10, Cifar100, FashionMnist, Mnist


@hookimpl
def register_datasets(register: Register) -> None:
    """Register every built-in dataset."""
    for dataset in (Digits, Mnist1d, Synthetic, Cifar10, Cifar100, Mnist, FashionMnist, Imagenet):
        register(dataset())
