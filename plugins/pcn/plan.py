"""Which conv/linear layers PCN leaves dense and why, and the account of coverage it records.

`pcn_transform` decides with the calibration data; `plan` predicts the same decisions at
validation from one forward pass of the model on the meta device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from torch import nn

from pcnbench.api import Coverage, ParamError, Reason, layer_names, weight_names

from .capture import Capture, trace
from .keep import KeepRule, k_from_width, parse_keep
from .layers import unsupported
from .prune import producer, trace_graph

__all__ = [
    "ATTENTION",
    "READS_INPUT",
    "account",
    "growth",
    "leave_structural",
    "plan",
    "resolve_rules",
    "sizes",
]

READS_INPUT = "reads the network input"
ATTENTION = (
    "attention's input projection is computed inside MultiheadAttention's own forward "
    "(fused, or by a single kernel); pcn rewrites conv and linear modules only"
)


def resolve_rules(
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
            skipped[name] = Reason.PATTERN
        elif reason is not None:
            skipped[name] = reason
        else:
            rules[name] = rule
    return rules, skipped


def leave_structural(
    names: Sequence[str], rules: Mapping[str, KeepRule], skipped: dict[str, str], state: Capture
) -> None:
    """Add to `skipped` the layers the forward pass rules out, whatever their rule says."""
    calls = state.calls()
    for name in names:
        if name == state.first:
            skipped[name] = Reason.FIRST_LAYER
        elif name in state.sees_input:
            skipped[name] = READS_INPUT
        elif name in rules and name not in calls:
            skipped[name] = Reason.NOT_CALLED
        elif calls.get(name, 0) > 1:
            skipped[name] = f"called {calls[name]} times per forward pass"


def sizes(members: Sequence[nn.Module], k: int) -> tuple[int, int]:
    """Parameters of layers reading one input: dense, and transformed to k components.

    Transformed, the group holds V (d×k) and the offset (k) once, and each member W′ and b′
    (b′ always: it absorbs W·μ); dense, each member's W and its b where it had one.
    """
    d = members[0].weight.shape[1]  # input channels or features (ungrouped)
    dense = sum(m.weight.numel() + (0 if m.bias is None else m.bias.numel()) for m in members)
    own = sum(m.weight.numel() // d * k + m.weight.shape[0] for m in members)
    return dense, d * k + k + own


def growth(members: Sequence[nn.Module], k: int) -> str | None:
    """Why layers sharing one input stay dense at k components (None: no larger transformed)."""
    dense, transformed = sizes(members, k)
    return Reason.would_grow(dense, transformed) if transformed > dense else None


def account(
    coverage: Coverage,
    model: nn.Module,
    transformed: Iterable[str],
    skipped: Mapping[str, str],
    pruned: Iterable[str] = (),
) -> Coverage:
    """Fill `coverage` (of the untransformed `model`): transformed weights reduced, the rest why.

    `pruned` are the layers `prune_outputs` took output channels from: their weights shrink too.
    """
    for name in transformed:
        coverage.reduce(f"{name}.weight")
    for name, reason in skipped.items():
        if "weight" in weight_names(model.get_submodule(name)):
            coverage.leave(f"{name}.weight", reason)
    for name in pruned:
        coverage.reduce(f"{name}.weight")
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            for local in weight_names(module):
                coverage.leave(f"{name}.{local}" if name else local, ATTENTION)
    return coverage


def plan(
    model: nn.Module,
    input_shape: tuple[int, ...],
    keep: str,
    layers: Mapping[str, str | None],
    grow: bool = False,
    prune_outputs: bool = False,
) -> Coverage | None:
    """What `pcn_transform` will reduce of `model` and leave dense (None: no forward pass).

    A layer whose k follows from its width alone (d and f rules) is checked for growth; one
    whose k the spectrum decides (v and t rules) counts as reduced, and so does the layer
    `prune_outputs` takes its output channels from.
    """
    overrides = {p: None if r is None else parse_keep(r) for p, r in layers.items()}
    modules = {name: model.get_submodule(name) for name in layer_names(model)}
    names = list(modules)
    rules, skipped = resolve_rules(names, modules, parse_keep(keep), overrides)
    try:
        state = trace(model, modules, set(rules), input_shape)
    except Exception:  # a forward the meta device cannot run: nothing to predict from
        return None
    leave_structural(names, rules, skipped, state)
    for group in state.groups:
        members = [name for name in group if name not in skipped]
        # k from the width alone; None where the spectrum decides (then counted as reduced).
        ks = [k_from_width(rules[name], modules[name].weight.shape[1]) for name in members]
        if grow or not members or None in ks:
            continue
        reason = growth([modules[name] for name in members], max(ks))
        if reason is not None:
            skipped.update(dict.fromkeys(members, reason))
    reduced = [name for name in rules if name not in skipped]
    producers = _producers(model, reduced, modules, rules) if prune_outputs else []
    return account(Coverage(model, "pcn"), model, reduced, skipped, producers)


def _producers(
    model: nn.Module,
    reduced: Sequence[str],
    modules: Mapping[str, nn.Module],
    rules: Mapping[str, KeepRule],
) -> list[str]:
    """The layers `prune_outputs` will take channels from (none where it will refuse to)."""
    try:
        graph = trace_graph(model)
        lookup = dict(model.named_modules())
        found = {name: producer(graph, lookup, name)[0] for name in reduced}
    except ParamError:  # the run says why; the plan has nothing to add
        return []
    width = {name: modules[name].weight.shape[1] for name in reduced}
    kept = {name: k_from_width(rules[name], width[name]) for name in reduced}
    # Nothing is removed where all d components are kept; under v and t rules some may be.
    return [found[n] for n in reduced if kept[n] is None or kept[n] < width[n]]
