"""Capturing layer inputs with forward pre-hooks while calibration batches run through."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pcnbench.api import eval_mode

from .moments import Moments

__all__ = ["Capture", "capture", "trace"]


@dataclass
class Capture:
    """Inputs seen during calibration: one PCA accumulator per distinct input tensor."""

    first: str | None = None  # the first conv/linear the forward pass calls
    sees_input: set[str] = field(default_factory=set)
    groups: list[list[str]] = field(default_factory=list)  # layers reading each input
    kinds: list[bool] = field(default_factory=list)  # conv input?
    moments: list[Moments] = field(default_factory=list)
    samples: int = 0

    def calls(self) -> dict[str, int]:
        """How many times each captured layer is called per forward pass."""
        counts: dict[str, int] = {}
        for group in self.groups:
            for name in group:
                counts[name] = counts.get(name, 0) + 1
        return counts


def capture(
    model: nn.Module, layers: Mapping[str, nn.Module], wanted: set[str], batches: Iterable[Any]
) -> Capture:
    """Run `batches` through `model` (eval, no grad) and accumulate the inputs of `wanted`."""
    state = _run(model, layers, wanted, batches, accumulate=True)
    if state.samples < 2:
        raise ValueError(f"pcn_transform needs at least 2 calibration samples, got {state.samples}")
    return state


def trace(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    wanted: set[str],
    input_shape: tuple[int, ...],
) -> Capture:
    """The structure `capture` would find (first layer, groups), from one batch of zeros.

    Works on a model built on the meta device; no moments are accumulated.
    """
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    return _run(model, layers, wanted, [torch.zeros((2, *input_shape), device=device)], False)


def _storage(x: torch.Tensor) -> int:
    # The storage's identity: its views and detached copies share it (the data pointer is 0
    # for every tensor on the meta device).
    return x.untyped_storage()._cdata


def _run(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    wanted: set[str],
    batches: Iterable[Any],
    accumulate: bool,
) -> Capture:
    state = Capture()
    reference = next(iter(model.parameters()), None)
    batch_groups: list[list[str]] = []
    # id → (weak reference, version, index): an id is only reused once its tensor is gone,
    # and an in-place change bumps the version, so neither is mistaken for the same input.
    seen: dict[int, tuple[weakref.ref, int, int]] = {}
    input_storage: list[int] = []
    batch_index = 0

    def hook_for(name: str):
        conv = isinstance(layers[name], nn.modules.conv._ConvNd)

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if state.first is None:
                state.first = name
            if name == state.first or not args or not torch.is_tensor(args[0]):
                return
            x = args[0]
            if _storage(x) in input_storage:
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
                state.moments.append(Moments())
                state.kinds.append(conv)
            elif index >= len(state.moments) or state.kinds[index] != conv:
                raise RuntimeError(_INCONSISTENT)
            if accumulate:
                state.moments[index].add(x.detach(), conv)

        return hook

    handles = [layers[name].register_forward_pre_hook(hook_for(name)) for name in layers]
    try:
        with eval_mode(model), torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if reference is not None:
                    dtype = reference.dtype if x.is_floating_point() else x.dtype
                    x = x.to(reference.device, dtype)
                input_storage[:] = [_storage(x)]
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
    return state


_INCONSISTENT = (
    "pcn_transform: the layers and the inputs they share differ between calibration batches "
    "(a forward pass with data-dependent structure is not supported)"
)
