"""The `lowrank` method: truncated-SVD factorization of conv and linear layers.

Each selected layer's weight, rearranged as a matrix, is replaced by its best rank-r
approximation (Eckart–Young), stored as two thinner layers that share √σ between them:

- Linear (out × in): in→r without bias, then r→out with the original bias (Denton et al. 2014).
- Conv, `channel` scheme: (out, in·kh·kw) → a kh×kw conv in→r, then a 1×1 conv r→out
  (Denton et al. 2014; Idelbayev & Carreira-Perpiñán 2020).
- Conv, `spatial` scheme: (in·kh, out·kw) → a kh×1 conv in→r, then a 1×kw conv r→out
  (Jaderberg et al. 2014, scheme 2).

The factorization happens during training (`at_epoch` an epoch, as PCN does), after training
followed by fine-tuning (`at_epoch: end`), or on the fresh network before any training
(`at_epoch: 0`, spectral initialization of Khodak et al. 2021).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from pcnbench.api import EpochPlan, Method, ParamError, Params
from pcnbench.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pcnbench.api import Coverage, Recipe, Session

    Layer = nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear

# torch is imported inside the functions that use it: registering the plugin and validating
# its parameters need none.

__all__ = [
    "Factorized",
    "LowRank",
    "LowRankParams",
    "LowRankResult",
    "RankRule",
    "choose_rank",
    "default_layers",
    "factorize_layer",
    "layer_matrix",
    "lowrank_coverage",
    "lowrank_layers",
    "lowrank_transform",
    "parse_rank",
    "unsupported",
]

Scheme = Literal["channel", "spatial"]


_RANK = re.compile(r"^\s*(?:(?P<kind>[er])(?P<value>[0-9.eE+-]+)|(?P<count>\d+))\s*$")
# A ratio times a width is often a hair above an integer in binary (0.3·10); don't round it up.
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class RankRule:
    """How many singular values a layer keeps: by energy, by ratio of the full rank, or fixed."""

    kind: Literal["energy", "ratio", "fixed"]
    value: float

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(int(self.value))
        return f"{'e' if self.kind == 'energy' else 'r'}{self.value!r}"


def parse_rank(rank: str | int | RankRule) -> RankRule:
    """Read `e0.9` (energy kept), `r0.25` (ratio of min(m, n)) or a positive integer."""
    if isinstance(rank, RankRule):
        return rank
    expected = (
        "expected 'e<τ>' (keep the smallest rank holding a fraction τ in (0, 1] of Σσ²), "
        "'r<ρ>' (rank ceil(ρ·min(m, n)), ρ in (0, 1]) or a positive integer rank"
    )
    if isinstance(rank, bool) or not isinstance(rank, (int, str)):
        raise ValueError(f"{expected}; got {rank!r}")
    if isinstance(rank, int):
        if rank < 1:
            raise ValueError(f"a fixed rank must be at least 1; got {rank}")
        return RankRule("fixed", rank)
    match = _RANK.match(rank)
    if match is None:
        raise ValueError(f"{expected}; got {rank!r}")
    if match.group("count") is not None:
        return parse_rank(int(match.group("count")))
    kind = "energy" if match.group("kind") == "e" else "ratio"
    try:
        value = float(match.group("value"))
    except ValueError:
        raise ValueError(f"{expected}; got {rank!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"the {kind} in {rank!r} must be in (0, 1]; got {value!r}")
    return RankRule(kind, value)


def choose_rank(singular_values: torch.Tensor, rule: RankRule | str | int) -> int:
    """The rank `rule` keeps for a matrix with these singular values (descending)."""
    rule = parse_rank(rule)
    full = len(singular_values)
    if rule.kind == "fixed":
        return min(int(rule.value), full)
    if rule.kind == "ratio":
        return max(1, min(full, math.ceil(rule.value * full - _CEIL_SLACK)))
    energy = singular_values.double().square().cumsum(0)
    total = energy[-1]
    if total <= 0:
        return 1  # a zero matrix: rank 1 (of zeros) is exact
    return min(full, int((energy < rule.value * total).sum()) + 1)


def layer_matrix(layer: Layer, scheme: Scheme = "channel") -> torch.Tensor:
    """The matrix whose SVD a scheme truncates.

    Linear: the weight (out × in). Conv (1-, 2- or 3-D), channel: (out × in·k…). Conv2d,
    spatial: M[(i, y), (o, x)] = W[o, i, y, x], shaped (in·kh × out·kw).
    """
    from torch import nn

    weight = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        return weight
    if scheme == "channel":
        return weight.reshape(weight.shape[0], -1)
    out_channels, in_channels, kh, kw = weight.shape
    return weight.permute(1, 2, 0, 3).reshape(in_channels * kh, out_channels * kw)


@dataclass
class Factorized:
    """A layer's two-layer replacement (`module`), its rank and the full spectrum it came from."""

    module: nn.Sequential
    rank: int
    singular_values: torch.Tensor  # float64, descending, all of them

    @property
    def max_rank(self) -> int:
        """min(m, n) of the factorized matrix: the rank that reproduces the layer exactly."""
        return len(self.singular_values)

    @property
    def energy(self) -> float:
        """Fraction of Σσ² kept by the first `rank` singular values."""
        squares = self.singular_values.square()
        total = float(squares.sum())
        return float(squares[: self.rank].sum()) / total if total > 0 else 1.0


def factorize_layer(
    layer: Layer, rank: RankRule | str | int, scheme: Scheme = "channel"
) -> Factorized:
    """Two layers computing the best rank-r approximation of `layer` (original untouched).

    The SVD runs in float64; the factors get √σ each and the layer's dtype and device.
    Layers `unsupported` names a reason for raise ValueError with it.
    """
    import torch
    from torch import nn

    reason = unsupported(layer, scheme)
    if reason is not None:
        raise ValueError(f"cannot factorize: {reason}")
    u, s, vh = torch.linalg.svd(layer_matrix(layer, scheme).double(), full_matrices=False)
    r = choose_rank(s, rank)
    root = s[:r].sqrt()
    left, right = u[:, :r] * root, root[:, None] * vh[:r]  # matrix ≈ left @ right
    if isinstance(layer, nn.Linear):
        first = _like(layer, nn.Linear, layer.in_features, r, bias=False)
        second = _like(layer, nn.Linear, r, layer.out_features, bias=layer.bias is not None)
        weights = (right, left)
    elif scheme == "channel":
        first, second, weights = _channel_pair(layer, r, left, right)
    else:
        first, second, weights = _spatial_pair(layer, r, left, right)
    with torch.no_grad():
        for module, weight in zip((first, second), weights, strict=True):
            module.weight.copy_(weight.reshape(module.weight.shape))
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return Factorized(nn.Sequential(first, second), r, s)


def _like(layer: Layer, kind: type[nn.Module], *args: Any, **kwargs: Any) -> Any:
    weight = layer.weight
    return kind(*args, **kwargs, device=weight.device, dtype=weight.dtype)


def unsupported(layer: nn.Module, scheme: Scheme = "channel") -> str | None:
    """Why `layer` cannot be factorized (None when it can)."""
    from torch import nn

    from pcnbench.api import Reason

    if isinstance(layer, nn.Linear):
        return None
    if isinstance(layer, nn.MultiheadAttention):
        return (
            "attention's input projection is computed inside MultiheadAttention's own forward "
            "(fused, or by a single kernel), which a factorized pair of layers cannot replace"
        )
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if layer.groups != 1:
            return Reason.grouped(layer.groups)
        if scheme == "spatial" and not isinstance(layer, nn.Conv2d):
            return f"the spatial scheme splits 2-D kernels; {type(layer).__name__} has none"
        return None
    return Reason.unsupported(type(layer).__name__, "lowrank")


def _channel_pair(
    conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, r: int, left: torch.Tensor, right: torch.Tensor
) -> tuple[nn.Module, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    kind = _conv_kind(conv)
    first = _like(
        conv,
        kind,
        conv.in_channels,
        r,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=False,
        padding_mode=conv.padding_mode,
    )
    second = _like(conv, kind, r, conv.out_channels, 1, bias=conv.bias is not None)
    return first, second, (right, left)


def _conv_kind(conv: nn.Module) -> type[nn.Module]:
    """The torch conv class a conv subclass is (its factors are plain convs of that rank)."""
    from torch import nn

    for kind in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(conv, kind):
            return kind
    raise TypeError(f"not a convolution: {type(conv).__name__}")


def _spatial_pair(
    conv: nn.Conv2d, r: int, left: torch.Tensor, right: torch.Tensor
) -> tuple[nn.Conv2d, nn.Conv2d, tuple[torch.Tensor, torch.Tensor]]:
    from torch import nn

    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    # Zero, reflect, replicate and circular padding all act on each axis separately, so the
    # vertical conv can pad rows and the horizontal one columns; "same"/"valid" likewise.
    if isinstance(conv.padding, str):
        vertical_pad: str | tuple[int, int] = conv.padding
        horizontal_pad: str | tuple[int, int] = conv.padding
    else:
        vertical_pad, horizontal_pad = (conv.padding[0], 0), (0, conv.padding[1])
    vertical = _like(
        conv,
        nn.Conv2d,
        conv.in_channels,
        r,
        (kh, 1),
        stride=(sh, 1),
        padding=vertical_pad,
        dilation=(dh, 1),
        bias=False,
        padding_mode=conv.padding_mode,
    )
    horizontal = _like(
        conv,
        nn.Conv2d,
        r,
        conv.out_channels,
        (1, kw),
        stride=(1, sw),
        padding=horizontal_pad,
        dilation=(1, dw),
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    # left[(i, y), k] is V[k, i, y]; right[k, (o, x)] is H[o, k, x].
    vertical_weight = left.T.reshape(r, conv.in_channels, kh, 1)
    horizontal_weight = right.reshape(r, conv.out_channels, kw).transpose(0, 1).unsqueeze(2)
    return vertical, horizontal, (vertical_weight, horizontal_weight)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def default_layers(model: nn.Module) -> list[str]:
    """Every conv, linear and attention layer but the first and the last conv or linear.

    The first sees the input and is too thin to save much; the last makes the logits, and a
    rank below the class count would cap what the classifier can tell apart.
    """
    from pcnbench.api import WEIGHTED, layer_names

    ends = layer_names(model)
    ends = {ends[0], ends[-1]} if ends else set()
    return [name for name in layer_names(model, WEIGHTED) if name not in ends]


def lowrank_layers(model: nn.Module, patterns: Sequence[str] | None = None) -> list[str]:
    """The layers `patterns` select (`pcnbench.api.select_layers`), or by default `default_layers`.

    A pattern that matches no conv or linear layer raises ParamError("layers", ...) naming it
    and the layers there are. Reads no weights: works on a model built on the meta device.
    """
    from pcnbench.api import WEIGHTED, select_layers

    if patterns is None:
        return default_layers(model)
    return select_layers(model, patterns, key="layers", kinds=WEIGHTED)


@dataclass
class LowRankResult:
    """A factorized copy of a model and what happened to each selected layer."""

    model: nn.Module
    layers: list[dict[str, Any]] = field(default_factory=list)  # the factorized ones
    skipped: dict[str, str] = field(default_factory=dict)  # name → why it stayed dense


def lowrank_transform(
    model: nn.Module,
    rank: RankRule | str | int = "e0.9",
    scheme: Scheme = "channel",
    layers: Sequence[str] | None = None,
    only_if_smaller: bool = True,
    input_shape: tuple[int, ...] | None = None,
) -> LowRankResult:
    """Factorize the selected layers of a deep copy of `model` (see `factorize_layer`).

    A layer stays dense when its two factors would hold at least as many parameters as it
    does (unless `only_if_smaller` is false, e.g. to check exactness at full rank), when
    `unsupported` names a reason (a grouped convolution, attention), or, given the
    `input_shape` of one sample, when the forward pass does not call it as a module (its
    parent reads its weight: replacing it would change nothing); `skipped` says which and why.
    """
    from pcnbench.api import Reason, called_layers

    rule = parse_rank(rank)
    new = copy.deepcopy(model)
    result = LowRankResult(new)
    selected = lowrank_layers(new, layers)
    called = set(called_layers(new, input_shape, selected)) if input_shape else set(selected)
    for name in selected:
        layer = new.get_submodule(name)
        reason = unsupported(layer, scheme)
        if reason is None and name not in called:
            reason = Reason.NOT_CALLED
        if reason is not None:
            result.skipped[name] = reason
            continue
        factorized = factorize_layer(layer, rule, scheme)
        before, after = _count(layer), _count(factorized.module)
        if only_if_smaller and after >= before:
            result.skipped[name] = (
                f"rank {factorized.rank} of {factorized.max_rank} saves no parameters "
                f"({after:,} factorized ≥ {before:,} dense)"
            )
            continue
        new.set_submodule(name, factorized.module)
        result.layers.append(
            {
                "name": name,
                "shape": list(layer.weight.shape),
                "rank": factorized.rank,
                "max_rank": factorized.max_rank,
                "energy": factorized.energy,
                "params_before": before,
                "params_after": after,
            }
        )
    return result


def lowrank_coverage(
    model: nn.Module, patterns: Sequence[str] | None, result: LowRankResult | None = None
) -> Coverage:
    """What factorizing `model` reduces and leaves dense, and why (a prediction without `result`).

    Without a result every selected layer that `unsupported` accepts counts as reduced: the
    rank, and so whether it saves anything, depends on the weights.
    """
    from pcnbench.api import WEIGHTED, Coverage, Reason, layer_names, weight_names

    account = Coverage(model, "lowrank")
    names = layer_names(model, WEIGHTED)
    selected = set(lowrank_layers(model, patterns))
    convs_linears = layer_names(model)
    for name in names:
        module = model.get_submodule(name)
        if name in selected:
            skipped = result.skipped.get(name) if result is not None else unsupported(module)
        elif patterns is not None:
            skipped = Reason.PATTERN
        elif convs_linears and name == convs_linears[0]:
            skipped = "first layer (reads the network input; left dense by default)"
        elif convs_linears and name == convs_linears[-1]:
            skipped = "last layer (makes the logits; left dense by default)"
        else:
            skipped = unsupported(module) or Reason.PATTERN
        for param in weight_names(module):
            if skipped is None:
                account.reduce(f"{name}.{param}")
            else:
                account.leave(f"{name}.{param}", skipped)
    return account


class LowRankParams(Params):
    """When to factorize, the rank rule, the scheme, and which layers."""

    # 0: spectral init before training; n: after n epochs, then on to the end; "end": after
    # training, then `finetune_epochs` more (the classic post-training compression).
    at_epoch: int | Literal["end"] = Field(
        "end",
        description="0: factorize the fresh network; n: after n epochs, then train on; end: "
        "after training, then fine-tune",
    )
    finetune_epochs: int = Field(10, ge=0, description="fine-tuning epochs after `end`")
    # "rewind" replays the schedule's last epochs (Renda et al. 2020): no new hyperparameter.
    finetune_lr: float | Literal["rewind"] = Field(
        "rewind",
        description="a learning rate > 0, or rewind: replay the schedule's last "
        "`finetune_epochs` epochs",
    )
    rank: int | str = Field(
        "e0.9",
        description="e0.9: smallest rank keeping 90% of Σσ²; r0.25: ceil(0.25·min(m, n)); an "
        "integer: that rank",
    )
    scheme: Scheme = Field(
        "channel", description="conv split: channel (kh×kw, then 1×1) or spatial (kh×1, then 1×kw)"
    )
    layers: tuple[str, ...] | None = Field(
        None, description="layer patterns to factorize; null: all but the first and the last"
    )

    @field_validator("at_epoch", mode="before")
    @classmethod
    def _at_epoch(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() == "end":
            return "end"
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ValueError(
            "expected an epoch count (0: factorize the initialized network; n: after n epochs) "
            f"or 'end' (after training, then fine-tune); got {value!r}"
        )

    @field_validator("finetune_lr", mode="before")
    @classmethod
    def _finetune_lr(cls, value: Any) -> Any:
        if value == "rewind":
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        raise ValueError(
            "expected a positive learning rate or 'rewind' (replay the schedule's last "
            f"finetune_epochs epochs); got {value!r}"
        )

    @field_validator("rank", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError(
                f"a bare number is ambiguous; write e{value!r} to keep that fraction of the "
                f"energy or r{value!r} for that fraction of the full rank"
            )
        rule = parse_rank(value)
        return int(rule.value) if rule.kind == "fixed" else str(rule)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
            raise ValueError(
                "expected layer-name patterns as a comma-separated string ('blocks.*.conv1,fc') "
                f"or a list of strings written [[...]] (a plain list expands a grid); got {value!r}"
            )
        patterns = tuple(p.strip() for p in value if p.strip())
        if not patterns:
            raise ValueError("names no layer pattern")
        return patterns


class LowRank(Method):
    """Truncated-SVD factorization of conv and linear layers, during, after or before training."""

    name = "lowrank"
    Params = LowRankParams

    def check(self, params: LowRankParams, recipe: Recipe) -> None:
        """`at_epoch` must fall inside training; fine-tuning only follows `end`."""
        at = params.at_epoch
        if at != "end" and at >= recipe.epochs:
            raise ParamError(
                "at_epoch",
                f"must be < recipe.epochs={recipe.epochs} to factorize during training "
                f"(got {at}); use 'end' to factorize after training",
            )
        defaults = LowRankParams.model_fields
        if at != "end":
            for key in ("finetune_epochs", "finetune_lr"):
                if getattr(params, key) != defaults[key].default:
                    raise ParamError(
                        key,
                        f"applies only with at_epoch: end (at_epoch is {at}); put the two "
                        "settings in separate method entries or exclude the combination",
                    )
        elif params.finetune_lr == "rewind" and params.finetune_epochs > recipe.epochs:
            raise ParamError(
                "finetune_epochs",
                f"finetune_lr 'rewind' replays the schedule's last finetune_epochs epochs, but "
                f"the recipe has only {recipe.epochs} (got {params.finetune_epochs})",
            )

    def plan_epochs(
        self, params: LowRankParams, recipe: Recipe, steps_per_epoch: int | None = None
    ) -> EpochPlan:
        """Dense to `at_epoch` then factorized to the end, or dense to the end then fine-tuned."""
        total, set_ = recipe.epochs, params.model_fields_set
        if params.at_epoch == "end":
            ft = params.finetune_epochs
            default = "" if "finetune_epochs" in set_ else " default"
            why = f"{total + ft} = {total} + {ft} fine-tune (lowrank.finetune_epochs{default})"
            return EpochPlan(trunk=(total,), own=ft, why=why)
        at = params.at_epoch
        why = f"{total} = {at} dense + {total - at} factorized (lowrank.at_epoch {at})"
        return EpochPlan(trunk=(at,), own=total - at, why=why)

    def check_model(self, params: LowRankParams, model: nn.Module) -> None:
        """Every `layers` pattern names a conv, linear or attention layer of the model."""
        lowrank_layers(model, params.layers)

    def plan_coverage(
        self, params: LowRankParams, model: nn.Module, input_shape: tuple[int, ...]
    ) -> Coverage:
        """The selected layers lowrank can factorize (whether a rank saves anything is open)."""
        from pcnbench.api import Reason, called_layers

        result = LowRankResult(model)
        selected = lowrank_layers(model, params.layers)
        called = set(called_layers(model, input_shape, selected))
        for name in selected:
            reason = unsupported(model.get_submodule(name), params.scheme)
            if reason is None and name not in called:
                reason = Reason.NOT_CALLED
            if reason is not None:
                result.skipped[name] = reason
        account = lowrank_coverage(model, params.layers, result)
        account.exact = False  # whether a rank saves parameters depends on the weights
        return account

    def run(self, session: Session, params: LowRankParams) -> None:
        """Train to `at_epoch`, factorize, then train to the end (or fine-tune after `end`)."""
        after_training = params.at_epoch == "end"
        lowrank_layers(session.model, params.layers)  # as check_model: fail before training
        session.train(until="end" if after_training else params.at_epoch)
        acc_before = session.evaluate()["accuracy"]
        with session.phase("lowrank_factorize", kind="transform"):
            account_of = session.model
            result = lowrank_transform(
                session.model,
                params.rank,
                params.scheme,
                params.layers,
                input_shape=session.input_shape,
            )
        session.model = result.model
        acc_after = session.evaluate()["accuracy"]
        if not after_training:
            session.train(until="end")
        elif params.finetune_epochs > 0:
            session.finetune(params.finetune_epochs, lr=params.finetune_lr)
        session.record(
            transform_epoch=session.recipe.epochs if after_training else params.at_epoch,
            acc_before_transform=acc_before,
            acc_after_transform=acc_after,
            lowrank_layers=result.layers,
            lowrank_skipped=result.skipped,
            **lowrank_coverage(account_of, params.layers, result).columns(),
        )


@hookimpl
def register_methods(register: Register) -> None:
    """Register the low-rank factorization method."""
    register(LowRank())
