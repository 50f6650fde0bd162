"""A third-party pcnbench plugin: `random_prune`, unstructured pruning at random.

After `at_epoch` epochs of dense training, every conv and linear layer that no `exclude`
pattern matches loses round(`sparsity` × its size) weights chosen uniformly at random; training
then goes on to the recipe's end with those weights held at zero. Random pruning is the
baseline a pruning criterion has to beat (Liu et al. 2022, "The Unreasonable Effectiveness of
Random Pruning").

It imports only the public surface, `pcnbench.api` and `pcnbench.hookspecs`, as any plugin
distributed outside pcnbench must; pcnbench's docs/plugins.md walks through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from pcnbench.api import (
    MaskEnforcer,
    Method,
    ParamError,
    Params,
    Patterns,
    Recipe,
    Session,
    derive_seed,
    layer_names,
    select_layers,
    set_mask,
)
from pcnbench.hookspecs import Register, hookimpl

# The masks' own random stream, mixed with the cell seed by derive_seed: the weights were
# initialized right after torch.manual_seed(seed), so a generator seeded with the seed itself
# would replay those draws.
MASK_STREAM = 0x6D61736B


class RandomPruneParams(Params):
    """How much to prune, when, and which layers to leave dense."""

    sparsity: float = Field(gt=0, lt=1)  # fraction of each pruned layer's weights removed
    at_epoch: int = Field(0, ge=0)  # epochs of dense training before pruning
    exclude: Patterns = ()  # fnmatch patterns of layers never pruned, e.g. "fc"


def prunable(model: nn.Module, exclude: Sequence[str]) -> list[str]:
    """Conv and linear layers no `exclude` pattern matches (ParamError: a pattern matches none)."""
    excluded = select_layers(model, exclude, key="exclude")
    names = [name for name in layer_names(model) if name not in excluded]
    if not names:
        raise ParamError("exclude", "excludes every conv and linear layer; nothing to prune")
    return names


def random_mask(weight: torch.Tensor, sparsity: float, generator: torch.Generator) -> torch.Tensor:
    """A mask shaped like `weight` with round(sparsity × size) zeros at random places, else ones."""
    size = weight.numel()
    mask = torch.ones(size)
    mask[torch.randperm(size, generator=generator)[: round(sparsity * size)]] = 0.0
    return mask.view(weight.shape)


class RandomPrune(Method):
    """Train to `at_epoch`, prune each layer at random, train to the end, record."""

    name = "random_prune"
    Params = RandomPruneParams

    def check(self, params: RandomPruneParams, recipe: Recipe) -> None:
        """Pruning must happen within the recipe."""
        if params.at_epoch > recipe.epochs:
            raise ParamError("at_epoch", f"must be ≤ recipe.epochs={recipe.epochs}")

    def check_model(self, params: RandomPruneParams, model: nn.Module) -> None:
        """Every `exclude` pattern names a layer of this model, and a layer is left to prune."""
        prunable(model, params.exclude)

    def run(self, session: Session, params: RandomPruneParams) -> None:
        """Dense training, random masks, training to the end with the masks held, one result."""
        session.train(until=params.at_epoch)
        with session.phase("prune", kind="transform"):
            generator = torch.Generator().manual_seed(derive_seed(session.seed, MASK_STREAM))
            for name in prunable(session.model, params.exclude):
                layer = session.model.get_submodule(name)
                set_mask(layer, "weight", random_mask(layer.weight, params.sparsity, generator))
        session.add_step_hook(MaskEnforcer(session))  # momentum would revive pruned weights
        session.train(until="end")
        session.record(prune_epoch=params.at_epoch)


@hookimpl
def register_methods(register: Register) -> None:
    """Register `random_prune`."""
    register(RandomPrune())
