"""Built-in model families: CIFAR ResNet and VGG (as OpenLTH), MLP, small CNN, torchvision."""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl

from .cifar_resnet import ResNet
from .cifar_vgg import VGG
from .mlp import CNN, MLP


@hookimpl
def register_models(register: Register) -> None:
    """Register every built-in model family, torchvision's classifiers included."""
    # Imported here: torchvision is slow to import and only needed once plugins load.
    from .torchvision_models import torchvision_models

    for model in (ResNet(), VGG(), MLP(), CNN(), *torchvision_models()):
        register(model)
