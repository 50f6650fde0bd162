"""The `lottery` method: iterative magnitude pruning with rewinding (lottery tickets).

Frankle & Carbin 2019; Frankle et al. 2020; OpenLTH's `lottery` runner with `sparse_global`.
Train to the rewind step k and keep that state (weights, BatchNorm statistics, step, RNG, and
the optimizer's); train to the end. Each level prunes ceil(rate × remaining) weights by one
global |w| threshold over the still-unpruned conv and linear weights of the last trained
network, rewinds to step k, applies the mask and trains from k to the end again, with the
schedule and data order resuming at k. As in OpenLTH, each level starts a fresh optimizer at
step k (no momentum); `rewind_optimizer: true` restores the step-k optimizer state instead.
Every level is a result row charged with all training so far.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field

from pcnbench.api import EpochPlan, Method, ParamError, Params, Patterns, Recipe, parse_steps
from pcnbench.hookspecs import Register, hookimpl

from .pruning import (
    attach_masks,
    current_weights,
    imp_masks,
    layer_densities,
    prunable_weights,
    pruning_coverage,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn

    from pcnbench.api import Coverage, ReportData, ReportFigure, Session


def _canonical_rewind(value: Any) -> str:
    # One spelling per point, so `2`, "2" and "2ep" are the same cell (and keep their cell id).
    spec = parse_steps(value)
    return "0" if spec.count == 0 else str(spec)


Rewind = Annotated[str, BeforeValidator(_canonical_rewind)]
"""Rewind point: "0" (original lottery ticket), "Nep" epochs or "Nit" optimizer steps."""


def rewind_step(rewind: str, steps_per_epoch: int) -> int:
    """The optimizer step k a `rewind` value names."""
    return parse_steps(rewind).to_step(steps_per_epoch)


class LotteryParams(Params):
    """Pruning levels, the fraction pruned per level, the rewind point and layers left dense."""

    levels: int = Field(ge=1, description="pruning rounds; one result row each")
    rate: float = Field(0.2, gt=0, lt=1, description="fraction of remaining weights per level")
    rewind: Rewind = Field(
        "0", description="rewind point: 0 (original lottery ticket), Nep epochs or Nit steps"
    )
    rewind_optimizer: bool = Field(
        False,
        description="restore the step-k optimizer state (momentum) too; default: a fresh "
        "optimizer at step k, as OpenLTH",
    )
    exclude: Patterns = Field((), description="layer patterns never pruned")
    include: Patterns = Field(
        (), description="layers pruned beyond conv, linear and attention (e.g. an Embedding)"
    )


class Lottery(Method):
    """Iterative magnitude pruning with rewinding to step k (OpenLTH `lottery`)."""

    name = "lottery"
    Params = LotteryParams
    point_keys = ("level",)  # one result row per IMP level: each level is its own point

    def check(self, params: LotteryParams, recipe: Recipe) -> None:
        """An epoch rewind point must lie before the recipe's end (steps are checked in run)."""
        rewind = parse_steps(params.rewind)
        if rewind.unit == "ep" and rewind.count >= recipe.epochs:
            raise ParamError(
                "rewind",
                f"must be before the end of training (recipe.epochs={recipe.epochs}); "
                f"got {params.rewind}",
            )

    def plan_epochs(
        self, params: LotteryParams, recipe: Recipe, steps_per_epoch: int | None = None
    ) -> EpochPlan:
        """Dense to the end (level 0), then `levels` retrainings from the rewind point."""
        total, levels = recipe.epochs, params.levels
        rewind = parse_steps(params.rewind)
        known = rewind.unit == "ep" or rewind.count == 0 or bool(steps_per_epoch)
        if rewind.unit == "ep":
            k: float = rewind.count
        elif steps_per_epoch:
            k = rewind.count / steps_per_epoch
        else:  # steps, before the data's size is known: count whole retrainings (at most)
            k = 0.0
        own = levels * (total - k)
        each = f"{total - k:g}" if known else f"≤{total}"
        why = (
            f"{'' if known else '≤'}{total + own:g} = {total} dense (level 0) + {levels} "
            f"level{'s' if levels > 1 else ''} × {each} (retrained from rewind {params.rewind}"
            f"{'' if known else ', a step count: its epoch depends on the data size'})"
        )
        return EpochPlan(trunk=(k, total) if k else (total,), own=own, why=why)

    def check_model(self, params: LotteryParams, model: nn.Module) -> None:
        """Every `exclude` and `include` pattern names a layer, and some weight is left to prune."""
        prunable_weights(model, params.exclude, params.include)

    def plan_coverage(
        self, params: LotteryParams, model: nn.Module, input_shape: tuple[int, ...]
    ) -> Coverage:
        """Every conv, linear and attention weight but those `exclude` names, and `include`'s."""
        return pruning_coverage(model, self.name, params.exclude, params.include)

    def run(self, session: Session, params: LotteryParams) -> None:
        """Level 0 dense, then `levels` rounds of prune, rewind, retrain, record."""
        from pcnbench.api import MaskEnforcer  # torch: imported when it runs

        k = rewind_step(params.rewind, session.steps_per_epoch)
        if k >= session.total_steps:
            raise ParamError(
                "rewind",
                f"{params.rewind} is step {k}, not before the end of training at step "
                f"{session.total_steps}",
            )
        # as check_model: fail before training; the account is of the model as it started
        account = pruning_coverage(session.model, self.name, params.exclude, params.include)
        enforce = MaskEnforcer(session)
        session.add_step_hook(enforce)
        if k > 0:
            session.train(until=f"{k}it")
        start = session.snapshot()
        session.train(until="end")
        level0_accuracy = session.evaluate()["accuracy"]
        masks = None
        for level in range(1, params.levels + 1):
            with session.phase("prune", kind="transform"):
                layers = prunable_weights(session.model, params.exclude, params.include)
                masks = imp_masks(current_weights(layers), params.rate, masks)
                session.restore(start)
                if not params.rewind_optimizer:
                    # OpenLTH builds a new optimizer for every level's run from step k; the
                    # setter does that (the schedule and data order follow the step, still k).
                    session.model = session.model
                attach_masks(prunable_weights(session.model, params.exclude, params.include), masks)
                enforce.refresh()
            session.train(until="end")
            session.record(
                level=level,
                rewind_step=k,
                level0_accuracy=level0_accuracy,
                layer_densities=layer_densities(session.model),
                **account.columns(),
            )

    def figures(self, data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
        """The report's IMP figures, drawn by `pcnbench_plugins.lottery_figures.imp_figures`."""
        from .lottery_figures import imp_figures  # matplotlib: imported only for a report

        return imp_figures(data, colors)


@hookimpl
def register_methods(register: Register) -> None:
    """Register lottery-ticket IMP."""
    register(Lottery())
