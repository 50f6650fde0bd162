"""What `pcn_transform` did, layer by layer: result columns and spectrum plots read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LayerReport", "PCNReport"]


@dataclass
class LayerReport:
    """One transformed layer: input width d, kept k, the variance kept and the spectrum."""

    name: str
    kind: str  # "conv" or "linear"
    d: int
    k: int
    explained: float  # fraction of the input's variance the kept components explain
    spectrum: list[float]  # eigenvalues of the input covariance, descending
    rule: str  # the keep rule that decided k (shared inputs: the one asking for most)
    basis: str  # the layer whose input defined the basis (itself unless shared)
    samples: int  # rows the PCA saw: samples, times positions for conv inputs
    undersampled: bool = False  # samples < d: components past the first samples − 1 arbitrary
    inputs_kept: int | None = None  # with prune_outputs: input channels left after pruning
    pruned: str | None = None  # with prune_outputs: the layer whose outputs were pruned


@dataclass
class PCNReport:
    """What `pcn_transform` did: transformed layers, and untransformed conv/linear with why."""

    layers: dict[str, LayerReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def layer_rows(self) -> list[dict[str, Any]]:
        """The transformed layers as plain dicts (for result columns and spectrum plots)."""
        return [asdict(layer) for layer in self.layers.values()]

    def skipped_rows(self) -> list[dict[str, str]]:
        """The untransformed conv/linear layers as {"layer", "reason"} dicts."""
        return [{"layer": name, "reason": reason} for name, reason in self.skipped.items()]
