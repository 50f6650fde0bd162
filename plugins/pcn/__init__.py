"""The `pcn` reduction method: Principal Component Networks (Waleffe & Rekatsinas 2020).

Train the dense network for a few epochs, run PCA on the input of every hidden conv (1-, 2- or
3-D) and linear layer over unaugmented calibration data, rewrite each layer to act on the top-k
principal components of its input (fixed buffers: V and the folded offset −Vᵀμ) unless that
would make it larger, and keep training the smaller network.
`pcn_transform` is the transform on its own; `PCN` is the method a suite runs.

Modules: `keep` (how many components), `moments` (streaming covariance, PCA), `capture`
(layer inputs during calibration), `layers` (the rewritten layers), `prune` (removing the
preceding layer's outputs), `transform` (`pcn_transform`), `plan` (which layers are left dense
and why, and the coverage account), `method` (`PCN` and its parameters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcnbench.hookspecs import Register, hookimpl

from .keep import KeepRule, choose_k, explained_fraction, parse_keep
from .method import PCN, PCNParams
from .report import LayerReport, PCNReport

if TYPE_CHECKING:
    from .layers import PCABasis, PCAConv, PCAConv2d, PCALinear
    from .moments import pca
    from .transform import pcn_transform

# These modules import torch: loaded on first use (PEP 562), so registering `pcn` needs none.
# (No module __dir__ listing them: pluggy reads every name dir() gives when it registers.)
_LAZY = {
    "PCABasis": "layers",
    "PCAConv": "layers",
    "PCAConv2d": "layers",
    "PCALinear": "layers",
    "pca": "moments",
    "pcn_transform": "transform",
}

__all__ = [
    "PCN",
    "KeepRule",
    "LayerReport",
    "PCABasis",
    "PCAConv",
    "PCAConv2d",
    "PCALinear",
    "PCNParams",
    "PCNReport",
    "choose_k",
    "explained_fraction",
    "parse_keep",
    "pca",
    "pcn_transform",
]


def __getattr__(name: str) -> Any:
    """Import a torch-using name (the layers, `pca`, `pcn_transform`) on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


@hookimpl
def register_methods(register: Register) -> None:
    """Register `pcn`."""
    register(PCN())
