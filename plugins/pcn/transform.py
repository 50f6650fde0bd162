"""`pcn_transform`: rewrite a whole network in the principal components of its layers' inputs."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from pcnbench.api import select_layers

from .capture import capture
from .keep import KeepRule, choose_k, explained_fraction, parse_keep
from .layers import PCABasis, rewrite, unsupported
from .moments import pca
from .prune import prune_producers, trace_graph
from .report import LayerReport, PCNReport

__all__ = ["pcn_transform"]


def _resolve_rules(
    names: Sequence[str],
    modules: Mapping[str, nn.Module],
    keep: KeepRule,
    overrides: Mapping[str, KeepRule | None],
) -> tuple[dict[str, KeepRule], dict[str, str]]:
    """Each layer's rule (the last matching `layers` pattern wins) and the layers left alone."""
    rules: dict[str, KeepRule] = {}
    skipped: dict[str, str] = {}
    for name in names:
        rule: KeepRule | None = keep
        for pattern, override in overrides.items():
            if fnmatchcase(name, pattern):
                rule = override
        reason = unsupported(modules[name])
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
    or to None to leave those layers alone (the last matching pattern wins); a pattern that
    matches no conv/linear layer raises ParamError("layers", ...) listing them. The first
    conv/linear the forward pass calls, and any layer reading the network input, are never
    transformed; grouped and dilated convs are left alone with a warning. Layers reading the
    very same tensor share one basis, with the largest k any of their rules asks for.
    `prune_outputs` also removes the preceding layer's output channels (see `prune_producers`).
    Returns the new network and a `PCNReport`.
    """
    keep_rule = parse_keep(keep)
    overrides = {p: None if r is None else parse_keep(r) for p, r in (layers or {}).items()}
    select_layers(model, overrides, key="layers")  # a pattern matching nothing is a typo
    work = copy.deepcopy(model)
    modules = {name: m for name, m in work.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    names = list(modules)
    rules, skipped = _resolve_rules(names, modules, keep_rule, overrides)
    graph = trace_graph(work) if prune_outputs else None
    # The modules as traced, for `prune_producers` to check types after the rewrite.
    original = dict(work.named_modules())
    state = capture(work, modules, set(rules), batches)

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
    bases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # μ, V (float64): output pruning
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
        # The offset −Vᵀμ is computed in float64, then stored in the layer's dtype.
        basis = PCABasis(mu, v).to(reference.device, reference.dtype)
        # n samples span at most n − 1 centered directions: with fewer samples than features,
        # the covariance's null space has two or more dimensions and any basis of it is as good.
        undersampled = moments.n < len(mu)
        if undersampled:
            warnings.warn(
                f"pcn: {', '.join(members)}: the PCA saw {moments.n} samples of an input "
                f"{len(mu)} wide (fewer samples than features): only the top {moments.n - 1} "
                f"components are determined by the data, the rest are arbitrary (k = {k}); "
                "calibrate with more samples",
                stacklevel=2,
            )
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
    report.layers = {n: report.layers[n] for n in names if n in report.layers}
    report.skipped = {n: skipped[n] for n in names if n in skipped}
    if prune_outputs:
        prune_producers(work, graph, original, report, bases)
    return work, report
