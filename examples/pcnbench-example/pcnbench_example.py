"""A third-party pcnbench plugin: `halfway` trains for a fraction of the recipe and stops.

The smallest useful plugin: one method, its parameters, one hook. It imports only the public
surface (`pcnbench.api`, `pcnbench.hookspecs`), as any plugin distributed outside pcnbench must.
"""

from __future__ import annotations

from pydantic import Field

from pcnbench.api import Method, Params, Session
from pcnbench.hookspecs import Register, hookimpl


class HalfwayParams(Params):
    """Parameters of `halfway`."""

    fraction: float = Field(0.5, gt=0, le=1)  # share of the recipe's optimizer steps to train


class Halfway(Method):
    """Train the first `fraction` of the recipe's steps, then record the model as it is."""

    name = "halfway"
    Params = HalfwayParams

    def run(self, session: Session, params: HalfwayParams) -> None:
        """Train to step round(fraction × total steps) and record the share actually trained."""
        steps = round(params.fraction * session.total_steps)
        session.train(until=f"{steps}it")
        session.record(trained_fraction=session.step / session.total_steps)


@hookimpl
def register_methods(register: Register) -> None:
    """Register `halfway`."""
    register(Halfway())
