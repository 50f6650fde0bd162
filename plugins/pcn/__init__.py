"""The `pcn` reduction method: Principal Component Networks (Waleffe & Rekatsinas 2020).

Train the dense network for a few epochs, run PCA on the input of every hidden conv and linear
layer over unaugmented calibration data, rewrite each layer to act on the top-k principal
components of its input (fixed buffers: V and the folded offset −Vᵀμ), and keep training
the smaller network.
`pcn_transform` is the transform on its own; `PCN` is the method a suite runs.

Modules: `keep` (how many components), `moments` (streaming covariance, PCA), `capture`
(layer inputs during calibration), `layers` (the rewritten layers), `prune` (removing the
preceding layer's outputs), `transform` (`pcn_transform`), `method` (`PCN` and its parameters).
"""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl

from .keep import KeepRule, choose_k, explained_fraction, parse_keep
from .layers import PCABasis, PCAConv2d, PCALinear
from .method import PCN, PCNParams
from .moments import pca
from .report import LayerReport, PCNReport
from .transform import pcn_transform

__all__ = [
    "PCN",
    "KeepRule",
    "LayerReport",
    "PCABasis",
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


@hookimpl
def register_methods(register: Register) -> None:
    """Register `pcn`."""
    register(PCN())
