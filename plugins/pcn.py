"""The `pcn` reduction method: Principal Component Networks (Waleffe & Rekatsinas 2020).

Train the dense network for a few epochs, run PCA on the input of every hidden conv and linear
layer over unaugmented calibration data, rewrite each layer to act on the top-k principal
components of its input (fixed buffers μ and V), and keep training the smaller network.
`pcn_transform` is the transform on its own; `PCN` is the method a suite runs.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from pcnbench.api import Method, Params, Recipe
from pcnbench.errors import ParamError
from pcnbench.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from pcnbench.session import Session

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


# ---------------------------------------------------------------------------------------------
# Keep rules: how many principal components a layer keeps.

_RULE = re.compile(r"^([dfvt])(.+)$")
_RULE_FORMS = (
    "d<count> (e.g. d64: that many components), f<fraction> (f0.25: of the input width), "
    "v<variance> (v0.999: cumulative explained variance) or t<threshold> (t1e-3: eigenvalues "
    "at least this)"
)


@dataclass(frozen=True)
class KeepRule:
    """A parsed keep rule: `kind` is d, f, v or t and `value` its number; `text` the original."""

    kind: str
    value: float
    text: str


def parse_keep(rule: str) -> KeepRule:
    """Parse a keep rule (`d64`, `f0.25`, `v0.999`, `t1e-3`); ValueError says what is accepted."""
    if not isinstance(rule, str):
        raise ValueError(f"keep rule must be a string, got {rule!r}; expected {_RULE_FORMS}")
    match = _RULE.match(rule.strip())
    if match is None:
        raise ValueError(f"invalid keep rule {rule!r}; expected {_RULE_FORMS}")
    kind, number = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"invalid keep rule {rule!r}: {number!r} is not a number") from None
    if kind == "d" and not (number.isdigit() and int(number) >= 1):
        raise ValueError(f"invalid keep rule {rule!r}: d takes a whole count ≥ 1 (e.g. d64)")
    if kind in "fv" and not 0 < value <= 1:
        raise ValueError(f"invalid keep rule {rule!r}: {kind} takes a fraction in (0, 1]")
    if kind == "t" and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"invalid keep rule {rule!r}: t takes a finite threshold ≥ 0")
    return KeepRule(kind, value, rule.strip())


def _as_rule(rule: str | KeepRule) -> KeepRule:
    return rule if isinstance(rule, KeepRule) else parse_keep(rule)


def _nonnegative(eigenvalues: Sequence[float] | torch.Tensor) -> torch.Tensor:
    # Covariance eigenvalues are ≥ 0; slightly negative ones are rounding.
    return torch.as_tensor(eigenvalues, dtype=torch.float64).clamp(min=0)


def choose_k(rule: str | KeepRule, eigenvalues: Sequence[float] | torch.Tensor) -> int:
    """Components to keep (1..d) under `rule`, given the d eigenvalues in descending order.

    d: min(d, count); f: ceil(fraction · d); v: the smallest k whose cumulative explained
    variance is ≥ the fraction; t: the eigenvalues ≥ the threshold. At least one is kept.
    """
    rule = _as_rule(rule)
    e = _nonnegative(eigenvalues)
    d = len(e)
    if d == 0:
        raise ValueError("choose_k needs at least one eigenvalue")
    if rule.kind == "d":
        k = int(rule.value)
    elif rule.kind == "f":
        # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, not above 3.
        k = math.ceil(round(rule.value * d, 9))
    elif rule.kind == "v":
        cumulative = torch.cumsum(e, 0)
        total = float(cumulative[-1])
        k = d if total <= 0 else int((cumulative / total < rule.value).sum()) + 1
    else:
        k = int((e >= rule.value).sum())
    return max(1, min(d, k))


def explained_fraction(eigenvalues: Sequence[float] | torch.Tensor, k: int) -> float:
    """Fraction of the total variance the top `k` of the (descending) eigenvalues explain."""
    e = _nonnegative(eigenvalues)
    total = float(e.sum())
    return 1.0 if total <= 0 else float(e[:k].sum()) / total


# ---------------------------------------------------------------------------------------------
# PCA of layer inputs, accumulated batch by batch.


class _Moments:
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


# ---------------------------------------------------------------------------------------------
# The rewritten layers.


class PCABasis(nn.Module):
    """The fixed basis of one layer input: mean `mu` (d,) and top-k eigenvectors `V` (d, k).

    Buffers, not parameters: they are not trained. Layers that read the same input hold the
    same PCABasis object, so the tensors exist (and are counted) once, even after `.to()`.
    """

    def __init__(self, mu: torch.Tensor, basis: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mu", mu)
        # Stored as the transpose of a contiguous (k, d) matrix: Vᵀ is then a ready-made
        # conv/linear weight, with no copy per forward pass.
        self.register_buffer("V", basis.T.contiguous().T)

    @property
    def width(self) -> int:
        """Input width d."""
        return self.V.shape[0]

    @property
    def components(self) -> int:
        """Kept components k."""
        return self.V.shape[1]

    def projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Vᵀ (k, d) and the offset −Vᵀμ (k,): Vᵀ(x − μ) = Vᵀx − Vᵀμ as one affine map."""
        return self.V.T.contiguous(), -(self.mu @ self.V)

    def extra_repr(self) -> str:
        """d and k."""
        return f"d={self.width}, k={self.components}"


class PCAConv2d(nn.Module):
    """A conv acting on the top-k principal components of its input's channels.

    Computes conv(Vᵀ(pad(x) − μ), W′) + b′ with padding 0 and the original stride, where
    W′ = W·V on the input-channel axis and b′ = b + Σ_positions W·μ.
    """

    def __init__(
        self,
        basis: PCABasis,
        weight: torch.Tensor,
        bias: torch.Tensor,
        stride: tuple[int, int],
        padding_mode: str = "zeros",
        reversed_padding: Sequence[int] = (0, 0, 0, 0),
    ) -> None:
        super().__init__()
        self.basis = basis
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.out_channels = weight.shape[0]
        self.kernel_size = tuple(weight.shape[2:])
        self.stride = tuple(stride)
        self.padding_mode = padding_mode
        left, right, top, bottom = reversed_padding
        self.padding = (left, right, top, bottom)  # as F.pad takes it
        # Zero padding on both sides alike is the 1×1 projection's own padding: its bias alone
        # fills the border, which is exactly Vᵀ(0 − μ).
        self._symmetric = padding_mode == "zeros" and left == right and top == bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, center and project the input in one 1×1 conv, then convolve with W′, b′."""
        projection, offset = self.basis.projection()
        projection = projection[:, :, None, None]
        if self._symmetric:
            left, _, top, _ = self.padding
            z = F.conv2d(x, projection, offset, padding=(top, left))
        else:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            z = F.conv2d(F.pad(x, self.padding, mode=mode), projection, offset)
        return F.conv2d(z, self.weight, self.bias, self.stride)

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


def _rewrite(
    module: nn.Conv2d | nn.Linear, basis: PCABasis, mu: torch.Tensor, v: torch.Tensor
) -> nn.Module:
    """The PCA layer computing `module` on the basis (μ, V float64): W′ = W·V, b′ = b + ΣW·μ."""
    weight = module.weight.detach().to(torch.float64)
    bias = module.bias.detach().to(torch.float64) if module.bias is not None else None
    bias = bias if bias is not None else weight.new_zeros(weight.shape[0])
    dtype = module.weight.dtype
    if isinstance(module, nn.Conv2d):
        new_weight = torch.einsum("oc...,ck->ok...", weight, v)
        new_bias = bias + torch.einsum("oc...,c->o", weight, mu)
        new: nn.Module = PCAConv2d(
            basis,
            new_weight.to(dtype),
            new_bias.to(dtype),
            stride=module.stride,
            padding_mode=module.padding_mode,
            reversed_padding=module._reversed_padding_repeated_twice,
        )
    else:
        new = PCALinear(basis, (weight @ v).to(dtype), (bias + weight @ mu).to(dtype))
    new.weight.requires_grad_(module.weight.requires_grad)
    new.train(module.training)
    return new


# ---------------------------------------------------------------------------------------------
# Capturing layer inputs with hooks.


@dataclass
class _Capture:
    """Inputs seen during calibration: one PCA accumulator per distinct input tensor."""

    first: str | None = None  # the first conv/linear the forward pass calls
    sees_input: set[str] = field(default_factory=set)
    groups: list[list[str]] = field(default_factory=list)  # layers reading each input
    kinds: list[bool] = field(default_factory=list)  # conv input?
    moments: list[_Moments] = field(default_factory=list)
    samples: int = 0


def _capture(
    model: nn.Module, layers: Mapping[str, nn.Module], wanted: set[str], batches: Iterable[Any]
) -> _Capture:
    """Run `batches` through `model` (eval, no grad) and accumulate the inputs of `wanted`."""
    state = _Capture()
    reference = next(iter(model.parameters()), None)
    batch_groups: list[list[str]] = []
    # id → (weak reference, version, index): an id is only reused once its tensor is gone,
    # and an in-place change bumps the version, so neither is mistaken for the same input.
    seen: dict[int, tuple[weakref.ref, int, int]] = {}
    input_storage: list[int] = []
    batch_index = 0

    def hook_for(name: str):
        conv = isinstance(layers[name], nn.Conv2d)

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if state.first is None:
                state.first = name
            if name == state.first or not args or not torch.is_tensor(args[0]):
                return
            x = args[0]
            if x.untyped_storage().data_ptr() in input_storage:
                state.sees_input.add(name)
                return
            if name not in wanted:
                return
            entry = seen.get(id(x))
            if entry is not None and entry[0]() is x and entry[1] == x._version:
                batch_groups[entry[2]].append(name)
                return
            index = len(batch_groups)
            seen[id(x)] = (weakref.ref(x), x._version, index)
            batch_groups.append([name])
            if batch_index == 0:
                state.moments.append(_Moments())
                state.kinds.append(conv)
            elif index >= len(state.moments) or state.kinds[index] != conv:
                raise RuntimeError(_INCONSISTENT)
            state.moments[index].add(x.detach(), conv)

        return hook

    modes = [(module, module.training) for module in model.modules()]
    handles = [layers[name].register_forward_pre_hook(hook_for(name)) for name in layers]
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if reference is not None:
                    dtype = reference.dtype if x.is_floating_point() else x.dtype
                    x = x.to(reference.device, dtype)
                input_storage[:] = [x.untyped_storage().data_ptr()]
                batch_groups.clear()
                seen.clear()
                model(x)
                if batch_index == 0:
                    state.groups = [list(group) for group in batch_groups]
                elif batch_groups != state.groups:
                    raise RuntimeError(_INCONSISTENT)
                state.samples += len(x)
                batch_index += 1
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    if state.samples < 2:
        raise ValueError(f"pcn_transform needs at least 2 calibration samples, got {state.samples}")
    return state


_INCONSISTENT = (
    "pcn_transform: the layers and the inputs they share differ between calibration batches "
    "(a forward pass with data-dependent structure is not supported)"
)


# ---------------------------------------------------------------------------------------------
# The transform.


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


def _unsupported(module: nn.Module) -> str | None:
    """Why a conv cannot be rewritten (None if it can)."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if tuple(module.dilation) != (1, 1):
            return f"dilated convolution (dilation={tuple(module.dilation)})"
    return None


def _resolve_rules(
    names: Sequence[str],
    modules: Mapping[str, nn.Module],
    keep: KeepRule,
    overrides: Mapping[str, KeepRule | None],
) -> tuple[dict[str, KeepRule], dict[str, str]]:
    """Each layer's rule (the last matching `layers` pattern wins) and the layers left alone."""
    for pattern in overrides:
        if not any(fnmatchcase(name, pattern) for name in names):
            # A warning, not an error: one suite entry may serve several model families.
            warnings.warn(
                f"pcn: layers pattern {pattern!r} matches no Conv2d or Linear layer; "
                "the layers are: " + ", ".join(names),
                stacklevel=3,
            )
    rules: dict[str, KeepRule] = {}
    skipped: dict[str, str] = {}
    for name in names:
        rule: KeepRule | None = keep
        for pattern, override in overrides.items():
            if fnmatchcase(name, pattern):
                rule = override
        reason = _unsupported(modules[name])
        if rule is None:
            skipped[name] = "left untransformed by a `layers` entry"
        elif reason is not None:
            warnings.warn(f"pcn: leaving {name} untransformed: {reason}", stacklevel=3)
            skipped[name] = reason
        else:
            rules[name] = rule
    return rules, skipped


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def pcn_transform(
    model: nn.Module,
    batches: Iterable[Any],
    keep: str = "f0.25",
    layers: Mapping[str, str | None] | None = None,
    prune_outputs: bool = False,
) -> tuple[nn.Module, PCNReport]:
    """Rewrite a network's hidden conv/linear layers in the principal components of their inputs.

    `batches` are calibration inputs (tensors, or tuples whose first item is the input) pushed
    through the untransformed `model` in eval mode; `model` itself is left unchanged. `keep` is
    the default rule (see `choose_k`); `layers` maps fnmatch patterns of module names to a rule,
    or to None to leave those layers alone (the last matching pattern wins). The first
    conv/linear the forward pass calls, and any layer reading the network input, are never
    transformed; grouped and dilated convs are left alone with a warning. Layers reading the
    very same tensor share one basis, with the largest k any of their rules asks for.
    `prune_outputs` also removes the preceding layer's output channels (see `_prune_outputs`).
    Returns the new network and a `PCNReport`.
    """
    keep_rule = parse_keep(keep)
    overrides = {p: None if r is None else parse_keep(r) for p, r in (layers or {}).items()}
    work = copy.deepcopy(model)
    modules = {name: m for name, m in work.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    names = list(modules)
    rules, skipped = _resolve_rules(names, modules, keep_rule, overrides)
    graph = _trace(work) if prune_outputs else None
    # The modules as traced, for `_prune_outputs` to check types after the rewrite.
    original = dict(work.named_modules())
    state = _capture(work, modules, set(rules), batches)

    calls: dict[str, int] = {}
    for group in state.groups:
        for name in group:
            calls[name] = calls.get(name, 0) + 1
    for name in names:
        if name == state.first:
            skipped[name] = "first layer (reads the network input)"
        elif name in state.sees_input:
            skipped[name] = "reads the network input"
        elif name in rules and name not in calls:
            skipped[name] = "not called in the forward pass"
        elif calls.get(name, 0) > 1:
            warnings.warn(f"pcn: leaving {name} untransformed: called more than once", stacklevel=2)
            skipped[name] = f"called {calls[name]} times per forward pass"
    report = PCNReport()
    bases: dict[str, torch.Tensor] = {}  # each layer's V (float64), for output pruning
    for group, conv, moments in zip(state.groups, state.kinds, state.moments, strict=True):
        members = [name for name in group if name not in skipped]
        if not members:
            continue
        mu, covariance = moments.mean_and_covariance()
        eigenvalues, vectors = pca(covariance)
        spectrum = eigenvalues.clamp(min=0)
        k, rule = max((choose_k(rules[n], spectrum), rules[n].text) for n in members)
        v = vectors[:, :k].contiguous()
        reference = modules[members[0]].weight
        basis = PCABasis(
            mu.to(reference.device, reference.dtype), v.to(reference.device, reference.dtype)
        )
        for name in members:
            _set_module(work, name, _rewrite(modules[name], basis, mu, v))
            bases[name] = v
            report.layers[name] = LayerReport(
                name=name,
                kind="conv" if conv else "linear",
                d=len(mu),
                k=k,
                explained=explained_fraction(spectrum, k),
                spectrum=spectrum.tolist(),
                rule=rule,
                basis=members[0],
                samples=moments.n,
            )
    report.layers = {n: report.layers[n] for n in names if n in report.layers}
    report.skipped = {n: skipped[n] for n in names if n in skipped}
    if prune_outputs:
        _prune_outputs(work, graph, original, report, bases)
    return work, report


# ---------------------------------------------------------------------------------------------
# Removing output channels of the preceding layer (the official code's "kill outputs").

_CHANNELWISE_MODULES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
)
_CHANNELWISE_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.hardtanh,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.flatten,
}
_CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "flatten"}
_PRUNE_SAFE = (
    "output pruning is only safe where a layer's input comes from exactly one preceding "
    "Conv2d/Linear through per-channel operations (VGG and MLP chains); leave such layers out "
    "with `layers: {pattern: null}` or set prune_outputs: false"
)


def _trace(model: nn.Module) -> Any:
    """The torch.fx graph of `model`, needed to check where output pruning is safe."""
    import torch.fx

    try:
        return torch.fx.symbolic_trace(model).graph
    except Exception as error:  # fx raises many types for untraceable code
        raise ParamError(
            "prune_outputs",
            f"needs a model torch.fx can trace ({type(error).__name__}: {error}); "
            "set prune_outputs: false",
        ) from error


def _producer(graph: Any, lookup: Mapping[str, nn.Module], name: str) -> tuple[str, list[str]]:
    """The conv/linear feeding layer `name` through per-channel ops, and those ops' modules.

    Raises ParamError("prune_outputs", ...) where the input has any other source or use.
    """
    nodes = [n for n in graph.nodes if n.op == "call_module"]
    uses: dict[str, int] = {}
    for node in nodes:
        uses[node.target] = uses.get(node.target, 0) + 1
    (node,) = [n for n in nodes if n.target == name]
    chain: list[str] = []
    current = node.args[0]
    while True:
        where = f"{name}: its input"
        if not hasattr(current, "users"):
            raise ParamError("prune_outputs", f"{where} is not a tensor computed in the model")
        if len(current.users) != 1:
            users = ", ".join(_node_label(u) for u in current.users)
            raise ParamError(
                "prune_outputs", f"{where} ({current.name}) is also used by {users}; {_PRUNE_SAFE}"
            )
        if current.op == "call_module":
            module = lookup[current.target]
            if uses[current.target] != 1:
                raise ParamError(
                    "prune_outputs", f"{where} passes through {current.target}, called twice"
                )
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if _unsupported(module) is not None:
                    raise ParamError(
                        "prune_outputs",
                        f"{where} comes from {current.target}, a {_unsupported(module)}",
                    )
                return current.target, chain
            if isinstance(module, _CHANNELWISE_MODULES):
                chain.append(current.target)
                current = current.args[0]
                continue
        elif (current.op == "call_function" and current.target in _CHANNELWISE_FUNCTIONS) or (
            current.op == "call_method" and current.target in _CHANNELWISE_METHODS
        ):
            current = current.args[0]
            continue
        what = "the network input" if current.op == "placeholder" else f"{current.name}"
        raise ParamError("prune_outputs", f"{where} comes from {what}; {_PRUNE_SAFE}")


def _node_label(node: Any) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _keep_rows(module: nn.Module, attr: str, index: torch.Tensor) -> None:
    """Keep entries `index` along dim 0 of a parameter or buffer of `module`, in place."""
    tensor = getattr(module, attr, None)
    if tensor is None:
        return
    kept = tensor.detach()[index].clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, attr, nn.Parameter(kept, requires_grad=tensor.requires_grad))
    else:
        setattr(module, attr, kept)


def _prune_outputs(
    model: nn.Module,
    graph: Any,
    original: Mapping[str, nn.Module],
    report: PCNReport,
    bases: Mapping[str, torch.Tensor],
) -> None:
    """Remove output channels of each transformed layer's producer, as the official code does.

    `original` maps names to the modules as traced (before the rewrite).
    The producer keeps the k channels whose rows of V have the largest L1 norm; μ and V keep
    those rows. b′ keeps the removed channels' mean contribution (exact for constant
    channels, such as dead ReLUs; the official code drops it).
    """
    plans = []
    for name, layer in report.layers.items():
        producer, chain = _producer(graph, original, name)
        plans.append((name, layer, producer, chain))
    for name, layer, producer, chain in plans:
        v = bases[name]
        width = _outputs(model.get_submodule(producer))
        if width != layer.d:
            raise ParamError(
                "prune_outputs",
                f"{name}: its input has {layer.d} features but {producer} gives {width} "
                f"channels (a flattened feature map larger than 1×1); {_PRUNE_SAFE}",
            )
        if layer.k >= layer.d:
            continue
        scores = v.abs().sum(1)
        index = scores.argsort(descending=True)[: layer.k].sort().values
        device_index = index.to(model.get_submodule(name).weight.device)
        source = model.get_submodule(producer)
        for attr in ("weight", "bias"):
            _keep_rows(source, attr, device_index)
        _set_width(source, layer.k)
        for link in chain:
            module = model.get_submodule(link)
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    _keep_rows(module, attr, device_index)
                module.num_features = layer.k
        target = model.get_submodule(name)
        old = target.basis
        target.basis = PCABasis(old.mu[device_index].clone(), old.V[device_index].clone())
        layer.inputs_kept = layer.k
        layer.pruned = producer


def _outputs(module: nn.Module) -> int:
    return module.weight.shape[0]


def _set_width(module: nn.Module, width: int) -> None:
    for attr in ("out_channels", "out_features"):
        if hasattr(module, attr):
            setattr(module, attr, width)


# ---------------------------------------------------------------------------------------------
# The method.


class PCNParams(Params):
    """Parameters of `pcn`: when to transform, how many components to keep, where."""

    at_epoch: int = Field(5, ge=0, description="epochs of dense training before the transform")
    keep: str = Field("f0.25", description="default keep rule: d64, f0.25, v0.999 or t1e-3")
    layers: dict[str, str | None] = Field(
        default_factory=dict,
        description="fnmatch pattern of layer names → keep rule, or null to leave them alone",
    )
    calibration: int = Field(5000, ge=2, description="training samples the PCA sees")
    prune_outputs: bool = Field(False, description="also remove the preceding layer's outputs")

    @field_validator("keep")
    @classmethod
    def _valid_keep(cls, keep: str) -> str:
        parse_keep(keep)
        return keep

    @field_validator("layers")
    @classmethod
    def _valid_layers(cls, layers: dict[str, str | None]) -> dict[str, str | None]:
        for pattern, rule in layers.items():
            if rule is not None:
                try:
                    parse_keep(rule)
                except ValueError as error:
                    raise ValueError(f"layers[{pattern!r}]: {error}") from None
        return layers


class PCN(Method):
    """Principal Component Networks: dense training, PCA transform at `at_epoch`, training on."""

    name = "pcn"
    Params = PCNParams

    def check(self, params: PCNParams, recipe: Recipe) -> None:
        """The transform must happen within the recipe."""
        if params.at_epoch > recipe.epochs:
            raise ParamError("at_epoch", f"must be ≤ recipe.epochs (got {params.at_epoch})")

    def run(self, session: Session, params: PCNParams) -> None:
        """Train to `at_epoch`, transform, train to the end, record."""
        session.train(until=params.at_epoch)
        before = session.evaluate()["accuracy"]
        with session.phase("pcn_transform", kind="transform"):
            new, report = pcn_transform(
                session.model,
                session.calibration_batches(params.calibration),
                keep=params.keep,
                layers=params.layers,
                prune_outputs=params.prune_outputs,
            )
            session.model = new
        after = session.evaluate()["accuracy"]
        session.train(until="end")
        session.record(
            transform_epoch=params.at_epoch,
            acc_before_transform=before,
            acc_after_transform=after,
            pcn_layers=report.layer_rows(),
            pcn_skipped=report.skipped_rows(),
        )


@hookimpl
def register_methods(register: Register) -> None:
    """Register `pcn`."""
    register(PCN())
