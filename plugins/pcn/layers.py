"""The rewritten layers: conv and linear acting on the top-k principal components of their input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pcnbench.api import Reason, exclude_from_weight_decay

__all__ = [
    "PCABasis",
    "PCAConv",
    "PCAConv2d",
    "PCALinear",
    "inherit",
    "rewrite",
    "unsupported",
]


class PCABasis(nn.Module):
    """The fixed basis of one layer input: top-k eigenvectors `V` (d, k) and offset −Vᵀμ (k,).

    Built from the input's mean μ (d,) and `V`; the projection Vᵀ(x − μ) = Vᵀx − Vᵀμ is one
    affine map, so the constant offset is folded here once and μ itself is not kept: at
    inference the layer stores and uses V and the offset only (both counted in `params`).
    Buffers, not parameters: they are not trained. Layers that read the same input hold the
    same PCABasis object, so the tensors exist (and are counted) once, even after `.to()`.
    """

    def __init__(self, mu: torch.Tensor, basis: torch.Tensor) -> None:
        super().__init__()
        # Stored as the transpose of a contiguous (k, d) matrix: Vᵀ is then a ready-made
        # conv/linear weight, with no copy per forward pass.
        self.register_buffer("V", basis.T.contiguous().T)
        # In the dtype given (pcn_transform passes float64, then converts the module).
        self.register_buffer("offset", -(mu @ basis))

    @property
    def width(self) -> int:
        """Input width d."""
        return self.V.shape[0]

    @property
    def components(self) -> int:
        """Kept components k."""
        return self.V.shape[1]

    def projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Vᵀ (k, d) and the offset −Vᵀμ (k,): weight and bias of the centering projection."""
        return self.V.T.contiguous(), self.offset

    def extra_repr(self) -> str:
        """d and k."""
        return f"d={self.width}, k={self.components}"


class PCAConv(nn.Module):
    """A 1-, 2- or 3-D conv acting on the top-k principal components of its input's channels.

    Computes conv(Vᵀ(pad(x) − μ), W′) + b′ with padding 0 and the original stride, where
    W′ = W·V on the input-channel axis and b′ = b + Σ_positions W·μ.
    """

    def __init__(
        self,
        basis: PCABasis,
        weight: torch.Tensor,
        bias: torch.Tensor,
        stride: Sequence[int],
        padding_mode: str = "zeros",
        reversed_padding: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.basis = basis
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.out_channels = weight.shape[0]
        self.kernel_size = tuple(weight.shape[2:])
        dims = len(self.kernel_size)
        self.stride = tuple(stride)
        self.padding_mode = padding_mode
        # As F.pad takes it: (left, right) of the last dimension first.
        self.padding = tuple(reversed_padding) if reversed_padding else (0,) * (2 * dims)
        self._conv = _CONV[dims]
        # Zero padding on both sides alike is the 1×1 projection's own padding: its bias alone
        # fills the border, which is exactly Vᵀ(0 − μ).
        pairs = [self.padding[i : i + 2] for i in range(0, 2 * dims, 2)]
        self._symmetric = padding_mode == "zeros" and all(a == b for a, b in pairs)
        self._projection_padding = tuple(a for a, _ in reversed(pairs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, center and project the input in one 1×1 conv, then convolve with W′, b′."""
        projection, offset = self.basis.projection()
        projection = projection.reshape(*projection.shape, *(1,) * len(self.kernel_size))
        if self._symmetric:
            z = self._conv(x, projection, offset, padding=self._projection_padding)
        else:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            z = self._conv(F.pad(x, self.padding, mode=mode), projection, offset)
        return self._conv(z, self.weight, self.bias, self.stride)

    @property
    def in_channels(self) -> int:
        """Input channels d the layer reads (before projection)."""
        return self.basis.width

    def extra_repr(self) -> str:
        """Shapes and geometry."""
        return (
            f"{self.in_channels}→{self.basis.components}→{self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
            + (f", padding_mode={self.padding_mode}" if self.padding_mode != "zeros" else "")
        )


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
# The name of the 2-D-only layer this generalizes, for code that imports it.
PCAConv2d = PCAConv


class PCALinear(nn.Module):
    """A linear layer acting on the top-k principal components of its input: W′Vᵀ(x − μ) + b′."""

    def __init__(self, basis: PCABasis, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.basis = basis
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.out_features = weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Center and project the input (one affine map), then apply W′, b′."""
        projection, offset = self.basis.projection()
        return F.linear(F.linear(x, projection, offset), self.weight, self.bias)

    @property
    def in_features(self) -> int:
        """Input width d the layer reads (before projection)."""
        return self.basis.width

    def extra_repr(self) -> str:
        """Shapes."""
        return f"{self.in_features}→{self.basis.components}→{self.out_features}"


def rewrite(
    module: nn.modules.conv._ConvNd | nn.Linear,
    basis: PCABasis,
    mu: torch.Tensor,
    v: torch.Tensor,
) -> nn.Module:
    """The PCA layer computing `module` on the basis (μ, V float64): W′ = W·V, b′ = b + ΣW·μ.

    The new parameters keep the original's treatment: requires_grad, and a bias added where the
    layer had none is kept out of weight decay (the layer had no bias to decay).
    """
    weight = module.weight.detach().to(torch.float64)
    bias = module.bias.detach().to(torch.float64) if module.bias is not None else None
    bias = bias if bias is not None else weight.new_zeros(weight.shape[0])
    dtype = module.weight.dtype
    if isinstance(module, nn.modules.conv._ConvNd):
        # contiguous: einsum lays W′ out channels-last, which would make the conv's output so.
        new_weight = torch.einsum("oc...,ck->ok...", weight, v).contiguous()
        new_bias = bias + torch.einsum("oc...,c->o", weight, mu)
        new: nn.Module = PCAConv(
            basis,
            new_weight.to(dtype),
            new_bias.to(dtype),
            stride=module.stride,
            padding_mode=module.padding_mode,
            reversed_padding=module._reversed_padding_repeated_twice,
        )
    else:
        new = PCALinear(basis, (weight @ v).to(dtype), (bias + weight @ mu).to(dtype))
    inherit(new.weight, module.weight)
    if module.bias is None:
        new.bias.requires_grad_(module.weight.requires_grad)
        exclude_from_weight_decay(new.bias)
    else:
        inherit(new.bias, module.bias)
    new.train(module.training)
    return new


def inherit(new: nn.Parameter, old: nn.Parameter) -> None:
    """Give `new` the treatment of the parameter it replaces: requires_grad and its attributes.

    Attributes carry marks such as `exclude_from_weight_decay`'s.
    """
    new.requires_grad_(old.requires_grad)
    new.__dict__.update(old.__dict__)


def unsupported(module: nn.Module) -> str | None:
    """Why a conv or linear layer cannot be rewritten (None if it can)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Its input positions spread over overlapping outputs: the folded bias b + ΣW·μ would
        # be wrong wherever fewer than all kernel positions land (borders, strides).
        return Reason.unsupported(type(module).__name__, "pcn")
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups != 1:
            return Reason.grouped(module.groups)
        if any(step != 1 for step in module.dilation):
            return f"dilated convolution (dilation={tuple(module.dilation)})"
    elif not isinstance(module, nn.Linear):
        return Reason.unsupported(type(module).__name__, "pcn")
    return None
