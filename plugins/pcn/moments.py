"""PCA of layer inputs: float64 moments accumulated batch by batch, and a reproducible basis."""

from __future__ import annotations

import torch

__all__ = ["Moments", "pca"]


class Moments:
    """Float64 running sums of a layer input's features for their mean and covariance.

    Conv inputs (N, C, H, W) count every position of every sample as a sample of C channels.
    Sums are taken around a shift (the first batch's mean) so that a large mean does not
    cancel the covariance's digits.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, x: torch.Tensor, conv: bool) -> None:
        """Add one batch of inputs."""
        if conv:
            # Bounded chunks: N·H·W float64 rows of a conv input may not fit in memory at once.
            step = max(1, (1 << 24) // max(1, x[0].numel()))
            for start in range(0, len(x), step):
                chunk = x[start : start + step].to(torch.float64)
                self._add(chunk.reshape(len(chunk), chunk.shape[1], -1))
        else:
            rows = x.reshape(-1, x.shape[-1]).to(torch.float64)
            self._add(rows.T.unsqueeze(0))

    def _add(self, samples: torch.Tensor) -> None:
        """Add (B, d, m) samples: B blocks of m samples of d features."""
        if self.shift is None:
            d = samples.shape[1]
            self.shift = samples.mean((0, 2))
            self.total = samples.new_zeros(d)
            self.outer = samples.new_zeros(d, d)
        centered = samples - self.shift[:, None]
        self.total += centered.sum((0, 2))
        self.outer += torch.bmm(centered, centered.transpose(1, 2)).sum(0)
        self.n += centered.shape[0] * centered.shape[2]

    def mean_and_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """μ (d,) and S = XcᵀXc / (n − 1), both float64."""
        if self.n < 2 or self.shift is None:
            raise ValueError(f"PCA needs at least 2 samples, got {self.n}")
        offset = self.total / self.n
        covariance = (self.outer - self.n * torch.outer(offset, offset)) / (self.n - 1)
        return self.shift + offset, (covariance + covariance.T) / 2


def pca(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix.

    Each eigenvector's sign is fixed (largest-magnitude entry positive) so bases are
    reproducible across devices and libraries.
    """
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    pivot = vectors.abs().argmax(0)
    signs = torch.sign(vectors[pivot, torch.arange(vectors.shape[1], device=vectors.device)])
    signs[signs == 0] = 1
    return eigenvalues, vectors * signs
