"""Built-in datasets: digits, synthetic, the torchvision sets and ImageNet folders."""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl

from .digits import Digits
from .imagenet import Imagenet
from .synthetic import Synthetic
from .torchvision_sets import Cifar10, Cifar100, FashionMnist, Mnist


@hookimpl
def register_datasets(register: Register) -> None:
    """Register every built-in dataset."""
    for dataset in (Digits, Synthetic, Cifar10, Cifar100, Mnist, FashionMnist, Imagenet):
        register(dataset())
