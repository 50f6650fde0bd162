"""Built-in model families: CIFAR ResNet and VGG (as OpenLTH), MLP, small CNNs, torchvision."""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl

from .cifar_resnet import ResNet
from .cifar_vgg import VGG
from .conv1d import CNN1d
from .mlp import CNN, MLP
from .torchvision_models import torchvision_family


@hookimpl
def register_models(register: Register) -> None:
    """Register every built-in model family, torchvision's classifiers included."""
    for model in (ResNet(), VGG(), MLP(), CNN(), CNN1d()):
        register(model)
    # A Family: torchvision (slow to import) lists its models only when a suite names one.
    register(torchvision_family())
