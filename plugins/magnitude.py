"""The `magnitude` method: unstructured magnitude pruning, one-shot or gradual.

One-shot (Han et al. 2015; ShrinkBench): train to the end of the recipe, remove the smallest
weights (one |w| threshold over all prunable weights, or the same fraction in every layer), then
fine-tune at a fixed small learning rate or by replaying the schedule's last epochs.
Gradual (Zhu & Gupta 2017): raise the sparsity along a cubic curve inside a window of the
recipe, updating the mask every Δt steps from the current weights.
Masks are re-applied after every optimizer step, so momentum and weight decay cannot revive
pruned weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from pcnbench.api import EpochPlan, Method, ParamError, Params, Patterns, Recipe
from pcnbench.hookspecs import Register, hookimpl

from .pruning import (
    attach_masks,
    current_weights,
    layer_densities,
    magnitude_masks,
    prunable_weights,
    pruning_coverage,
    zhu_gupta_sparsity,
    zhu_gupta_update_steps,
)

if TYPE_CHECKING:
    from torch import nn

    from pcnbench.api import Coverage, MaskEnforcer, Session

ONESHOT_FINETUNE_EPOCHS = 10


class MagnitudeParams(Params):
    """Target sparsity, where and when to prune, and the fine-tuning that follows."""

    sparsity: float = Field(gt=0, lt=1, description="fraction of prunable weights removed")
    scope: Literal["global", "layer"] = Field(
        "global",
        description="global: one |w| threshold over all prunable weights; layer: each layer "
        "to `sparsity`",
    )
    schedule: Literal["oneshot", "gradual"] = Field(
        "oneshot",
        description="oneshot: prune after training, then fine-tune; gradual: Zhu & Gupta's "
        "cubic schedule during training",
    )
    finetune_epochs: int | None = Field(
        None, ge=0, description="epochs after the recipe's end; default 10 oneshot, 0 gradual"
    )
    finetune: Literal["fixed_lr", "lr_rewind"] = Field(
        "fixed_lr",
        description="fixed_lr: at `finetune_lr`; lr_rewind: replay the schedule's last "
        "`finetune_epochs` epochs",
    )
    finetune_lr: float = Field(0.01, gt=0, description="learning rate of fixed_lr fine-tuning")
    start_epoch: int = Field(0, ge=0, description="gradual: first mask update")
    end_epoch: int | None = Field(
        None, ge=1, description="gradual: final sparsity reached; default half the recipe"
    )
    frequency: int = Field(100, ge=1, description="gradual: steps between mask updates (Δt)")
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="gradual: s_i at start_epoch")
    exclude: Patterns = Field((), description="layer patterns never pruned (e.g. fc)")
    include: Patterns = Field(
        (), description="layers pruned beyond conv, linear and attention (e.g. an Embedding)"
    )

    @model_validator(mode="after")
    def _initial_below_final(self) -> MagnitudeParams:
        if self.initial_sparsity > self.sparsity:
            raise ParamError(
                "initial_sparsity",
                f"must be ≤ sparsity ({self.sparsity}); got {self.initial_sparsity}",
            )
        return self


def finetune_epochs(params: MagnitudeParams) -> int:
    """Fine-tuning epochs after the recipe: as given, else 10 for oneshot and 0 for gradual."""
    if params.finetune_epochs is not None:
        return params.finetune_epochs
    return ONESHOT_FINETUNE_EPOCHS if params.schedule == "oneshot" else 0


def end_epoch(params: MagnitudeParams, recipe: Recipe) -> int:
    """Epoch at which gradual pruning reaches its final sparsity (default: half the recipe)."""
    return params.end_epoch if params.end_epoch is not None else max(1, recipe.epochs // 2)


class Magnitude(Method):
    """Unstructured magnitude pruning: one-shot after training, or gradual during it."""

    name = "magnitude"
    Params = MagnitudeParams

    def check(self, params: MagnitudeParams, recipe: Recipe) -> None:
        """The pruning window lies inside the recipe; LR rewinding replays at most all of it."""
        if params.schedule == "gradual":
            end = end_epoch(params, recipe)
            if end > recipe.epochs:
                raise ParamError(
                    "end_epoch", f"must be ≤ recipe.epochs={recipe.epochs} (got {end})"
                )
            if params.start_epoch >= end:
                default = " (default: half the recipe)" if params.end_epoch is None else ""
                raise ParamError(
                    "start_epoch",
                    f"must be before end_epoch={end}{default} (got {params.start_epoch})",
                )
        if params.finetune == "lr_rewind" and finetune_epochs(params) > recipe.epochs:
            raise ParamError(
                "finetune_epochs",
                f"lr_rewind replays the schedule's last epochs, so must be ≤ "
                f"recipe.epochs={recipe.epochs} (got {finetune_epochs(params)})",
            )

    def plan_epochs(
        self, params: MagnitudeParams, recipe: Recipe, steps_per_epoch: int | None = None
    ) -> EpochPlan:
        """The recipe's epochs (masked from `start_epoch` when gradual), then fine-tuning."""
        total, ft = recipe.epochs, finetune_epochs(params)
        default = "" if params.finetune_epochs is not None else " default"
        tail = f" + {ft} fine-tune (magnitude.finetune_epochs{default})"
        if params.schedule == "oneshot":
            return EpochPlan(trunk=(total,), own=ft, why=f"{total + ft} = {total}{tail}")
        start = params.start_epoch
        why = f"{total + ft} = {start} dense + {total - start} pruning gradually{tail}"
        return EpochPlan(trunk=(start,), own=total - start + ft, why=why)

    def check_model(self, params: MagnitudeParams, model: nn.Module) -> None:
        """Every `exclude` and `include` pattern names a layer, and some weight is left to prune."""
        prunable_weights(model, params.exclude, params.include)

    def plan_coverage(
        self, params: MagnitudeParams, model: nn.Module, input_shape: tuple[int, ...]
    ) -> Coverage:
        """Every conv, linear and attention weight but those `exclude` names, and `include`'s."""
        return pruning_coverage(model, self.name, params.exclude, params.include)

    def run(self, session: Session, params: MagnitudeParams) -> None:
        """Prune (one-shot or gradual), fine-tune, record."""
        from pcnbench.api import MaskEnforcer, mask_density  # torch: imported when it runs

        # as check_model: fail before training; the account is of the model as it started
        account = pruning_coverage(session.model, self.name, params.exclude, params.include)
        enforce = MaskEnforcer(session)
        session.add_step_hook(enforce)
        extra: dict[str, object]
        if params.schedule == "oneshot":
            extra = self._oneshot(session, params, enforce)
        else:
            extra = self._gradual(session, params, enforce)
        epochs = finetune_epochs(params)
        if epochs > 0:
            lr = params.finetune_lr if params.finetune == "fixed_lr" else "rewind"
            session.finetune(epochs, lr=lr)
        session.record(
            sparsity=1.0 - (mask_density(session.model) or 0.0),
            scope=params.scope,
            schedule=params.schedule,
            finetune_epochs=epochs,
            layer_densities=layer_densities(session.model),
            **account.columns(),
            **extra,
        )

    def _oneshot(
        self, session: Session, params: MagnitudeParams, enforce: MaskEnforcer
    ) -> dict[str, object]:
        session.train(until="end")
        before = session.evaluate()["accuracy"]
        with session.phase("prune", kind="transform"):
            layers = prunable_weights(session.model, params.exclude, params.include)
            weights = current_weights(layers)
            attach_masks(layers, magnitude_masks(weights, params.sparsity, params.scope))
            enforce.refresh()
        after = session.evaluate()["accuracy"]
        return {
            "prune_epoch": session.epoch,
            "accuracy_before_prune": before,
            "accuracy_after_prune": after,
        }

    def _gradual(
        self, session: Session, params: MagnitudeParams, enforce: MaskEnforcer
    ) -> dict[str, object]:
        start = params.start_epoch * session.steps_per_epoch
        end = end_epoch(params, session.recipe) * session.steps_per_epoch
        layers = prunable_weights(session.model, params.exclude, params.include)
        weights = current_weights(layers)
        masks = None
        # One metered phase: the many short train() calls between updates are one training run.
        with session.phase("train", kind="train"):
            for step in zhu_gupta_update_steps(start, end, params.frequency):
                session.train(until=f"{step}it")
                target = zhu_gupta_sparsity(
                    step, params.initial_sparsity, params.sparsity, start, end
                )
                masks = magnitude_masks(weights, target, params.scope, masks)
                attach_masks(layers, masks)
                enforce.refresh()
            session.train(until="end")
        return {
            "prune_epoch": end / session.steps_per_epoch,
            "prune_start_epoch": params.start_epoch,
        }


@hookimpl
def register_methods(register: Register) -> None:
    """Register magnitude pruning."""
    register(Magnitude())
