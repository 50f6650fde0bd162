"""What every meter shares: the reading that says a figure is missing, and why."""

from __future__ import annotations

import math

from pcnbench.api import Reading

__all__ = ["unmetered"]


def unmetered(component: str, why: str, estimate: bool = False) -> list[Reading]:
    """One NaN reading of `component` labelled "unmetered", with the reason as its note."""
    return [Reading(component, math.nan, "unmetered", estimate=estimate, note=why)]
