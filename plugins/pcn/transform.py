"""`pcn_transform`: rewrite a whole network in the principal components of its layers' inputs."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from pcnbench.api import layer_names, select_layers

from .capture import capture
from .keep import choose_k, explained_fraction, k_from_width, parse_keep
from .layers import PCABasis, rewrite
from .moments import Moments, pca
from .plan import growth, leave_structural, resolve_rules
from .prune import prune_producers, trace_graph
from .report import LayerReport, PCNReport

__all__ = ["pcn_transform"]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def pcn_transform(
    model: nn.Module,
    batches: Iterable[Any],
    keep: str = "f0.25",
    layers: Mapping[str, str | None] | None = None,
    prune_outputs: bool = False,
    grow: bool = False,
) -> tuple[nn.Module, PCNReport]:
    """Rewrite a network's hidden conv/linear layers in the principal components of their inputs.

    `batches` are calibration inputs (tensors, or tuples whose first item is the input) pushed
    through the untransformed `model` in eval mode; `model` itself is left unchanged. `keep` is
    the default rule (see `choose_k`); `layers` maps fnmatch patterns of module names to a rule,
    or to None to leave those layers alone (the last matching pattern wins); a pattern that
    matches no conv/linear layer raises ParamError("layers", ...) listing them. Conv1d, Conv2d,
    Conv3d and Linear layers are rewritten; the first conv/linear the forward pass calls, any
    layer reading the network input, grouped, dilated and transposed convs and layers called
    more than once are left alone (the report's `skipped` says why). Layers reading the very
    same tensor share one basis, with the largest k any of their rules asks for; such a group
    is left alone where its transform would hold more parameters than it does, unless `grow`.
    `prune_outputs` also removes the preceding layer's output channels (see `prune_producers`).
    Returns the new network and a `PCNReport`.
    """
    keep_rule = parse_keep(keep)
    overrides = {p: None if r is None else parse_keep(r) for p, r in (layers or {}).items()}
    select_layers(model, overrides, key="layers")  # a pattern matching nothing is a typo
    work = copy.deepcopy(model)
    modules = {name: work.get_submodule(name) for name in layer_names(work)}
    names = list(modules)
    rules, skipped = resolve_rules(names, modules, keep_rule, overrides)
    graph = trace_graph(work) if prune_outputs else None
    # The modules as traced, for `prune_producers` to check types after the rewrite.
    original = dict(work.named_modules())
    state = capture(work, modules, set(rules), batches)
    leave_structural(names, rules, skipped, state)

    report = PCNReport()
    bases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # μ, V (float64): output pruning
    undersampled_layers: list[str] = []
    for group, conv, moments in zip(state.groups, state.kinds, state.moments, strict=True):
        members = [name for name in group if name not in skipped]
        if not members:
            continue
        # d and f rules fix k by the width alone: a group that would grow needs no PCA.
        ks = [k_from_width(rules[n], modules[n].weight.shape[1]) for n in members]
        components = None
        if None in ks:
            components = _principal_components(moments)
            ks = [choose_k(rules[n], components[2]) for n in members]
        k, rule = max(zip(ks, [rules[n].text for n in members], strict=True))
        reason = None if grow else growth([modules[n] for n in members], k)
        if reason is not None:
            skipped.update(dict.fromkeys(members, reason))
            continue
        mu, vectors, spectrum = components or _principal_components(moments)
        v = vectors[:, :k].contiguous()
        reference = modules[members[0]].weight
        # The offset −Vᵀμ is computed in float64, then stored in the layer's dtype.
        basis = PCABasis(mu, v).to(reference.device, reference.dtype)
        # n samples span at most n − 1 centered directions: with fewer samples than features,
        # the covariance's null space has two or more dimensions and any basis of it is as good.
        undersampled = moments.n < len(mu)
        if undersampled:
            undersampled_layers += members
        for name in members:
            _set_module(work, name, rewrite(modules[name], basis, mu, v))
            bases[name] = (mu, v)
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
                undersampled=undersampled,
            )
    if undersampled_layers:
        warnings.warn(_undersampled_message(undersampled_layers), stacklevel=2)
    report.layers = {n: report.layers[n] for n in names if n in report.layers}
    report.skipped = {n: skipped[n] for n in names if n in skipped}
    if prune_outputs:
        prune_producers(work, graph, original, report, bases)
    return work, report


def _principal_components(moments: Moments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """μ, the eigenvectors (columns, largest eigenvalue first) and the spectrum (≥ 0)."""
    mu, covariance = moments.mean_and_covariance()
    eigenvalues, vectors = pca(covariance)
    return mu, vectors, eigenvalues.clamp(min=0)


def _undersampled_message(names: list[str]) -> str:
    """One warning for every layer whose PCA saw fewer samples than its input has features."""
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    count = f"{len(names)} layer{'s' if len(names) > 1 else ''}"
    return (
        f"pcn: {count} saw fewer calibration samples than input features ({shown}): only the "
        "top n − 1 components of n samples are determined by the data; calibrate with more "
        "samples"
    )
