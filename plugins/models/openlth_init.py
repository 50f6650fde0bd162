"""OpenLTH's default initialization for its CIFAR models (kaiming_normal + uniform BN)."""

from __future__ import annotations

from torch import nn


def openlth_init(module: nn.Module) -> None:
    """Initialize one module as OpenLTH does; use with `network.apply(openlth_init)`."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)
    elif isinstance(module, nn.BatchNorm2d):
        # OpenLTH's default `batchnorm_init='uniform'`: scale ~ U(0, 1), shift 0.
        nn.init.uniform_(module.weight, 0.0, 1.0)
        nn.init.zeros_(module.bias)
