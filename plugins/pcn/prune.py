"""Removing output channels of the preceding layer (the official code's "kill outputs")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from pcnbench.api import ParamError

from .layers import PCABasis, inherit, unsupported

if TYPE_CHECKING:
    from .report import PCNReport

__all__ = ["producer", "prune_producers", "trace_graph"]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CHANNELWISE_MODULES = (
    *_BATCH_NORMS,
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
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
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
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.flatten,
}
_CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "flatten"}
_PRUNE_SAFE = (
    "output pruning is only safe where a layer's input comes from exactly one preceding "
    "conv/linear through per-channel operations (VGG and MLP chains); leave such layers out "
    "with `layers: {pattern: null}` or set prune_outputs: false"
)


def trace_graph(model: nn.Module) -> Any:
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


def producer(graph: Any, lookup: Mapping[str, nn.Module], name: str) -> tuple[str, list[str]]:
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
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                if unsupported(module) is not None:
                    raise ParamError(
                        "prune_outputs",
                        f"{where} comes from {current.target}, a {unsupported(module)}",
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
        param = nn.Parameter(kept)
        inherit(param, tensor)  # e.g. a bias PCN added stays out of weight decay
        setattr(module, attr, param)
    else:
        setattr(module, attr, kept)


def prune_producers(
    model: nn.Module,
    graph: Any,
    original: Mapping[str, nn.Module],
    report: PCNReport,
    bases: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """Remove output channels of each transformed layer's producer, as the official code does.

    `original` maps names to the modules as traced (before the rewrite), `bases` each
    transformed layer's μ and V (float64).
    The producer keeps the k channels whose rows of V have the largest L1 norm; μ and V keep
    those rows. b′ keeps the removed channels' mean contribution (exact for constant
    channels, such as dead ReLUs; the official code drops it).
    """
    plans = []
    for name, layer in report.layers.items():
        plans.append((name, layer, *producer(graph, original, name)))
    for name, layer, feeder, chain in plans:
        mu, v = bases[name]
        width = _outputs(model.get_submodule(feeder))
        if width != layer.d:
            raise ParamError(
                "prune_outputs",
                f"{name}: its input has {layer.d} features but {feeder} gives {width} "
                f"channels (a flattened feature map larger than 1×1); {_PRUNE_SAFE}",
            )
        if layer.k >= layer.d:
            continue
        scores = v.abs().sum(1)
        index = scores.argsort(descending=True)[: layer.k].sort().values
        device_index = index.to(model.get_submodule(name).weight.device)
        source = model.get_submodule(feeder)
        for attr in ("weight", "bias"):
            _keep_rows(source, attr, device_index)
        _set_width(source, layer.k)
        for link in chain:
            module = model.get_submodule(link)
            if isinstance(module, _BATCH_NORMS):
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    _keep_rows(module, attr, device_index)
                module.num_features = layer.k
        target = model.get_submodule(name)
        old = target.basis
        # The offset −Vᵀμ over the kept rows only: b′ keeps the removed channels' part.
        target.basis = PCABasis(mu[index], v[index]).to(old.V.device, old.V.dtype)
        layer.inputs_kept = layer.k
        layer.pruned = feeder


def _outputs(module: nn.Module) -> int:
    return module.weight.shape[0]


def _set_width(module: nn.Module, width: int) -> None:
    for attr in ("out_channels", "out_features"):
        if hasattr(module, attr):
            setattr(module, attr, width)
