"""The `dense` baseline: train the unreduced network with the recipe and record it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcnbench.api import EpochPlan, Method, Params, Recipe
from pcnbench.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from pcnbench.api import Session


class Dense(Method):
    """Plain training with the suite's recipe; the reference every method is compared to."""

    name = "dense"
    Params = Params

    def plan_epochs(
        self, params: Params, recipe: Recipe, steps_per_epoch: int | None = None
    ) -> EpochPlan:
        """The recipe's epochs, all of them dense."""
        return EpochPlan(trunk=(recipe.epochs,), why=f"{recipe.epochs:,} (recipe.epochs)")

    def run(self, session: Session, params: Params) -> None:
        """Train to the end of the recipe and record the final model."""
        session.train(until="end")
        session.record()


@hookimpl
def register_methods(register: Register) -> None:
    """Register the dense baseline."""
    register(Dense())
