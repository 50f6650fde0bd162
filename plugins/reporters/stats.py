"""The statistics the reports print: t intervals over seeds, paired deltas, Pareto frontiers.

The intervals themselves live in the core (`pcnbench.api`: the claims use them too) and are
re-exported here under their old names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from pcnbench.api import Estimate, mean_ci, paired_delta, student_t_cdf, t_quantile, welch_delta

T = TypeVar("T")

__all__ = [
    "ABS_TOL",
    "REL_TOL",
    "Estimate",
    "at_least",
    "best_indices",
    "best_of",
    "beyond",
    "mean_ci",
    "paired_delta",
    "pareto_front",
    "same",
    "student_t_cdf",
    "t_quantile",
    "welch_delta",
]

# When two numbers count as equal, everywhere the reports compare them (Pareto dominance, best
# values in tables, the headline's pick): within REL_TOL of the larger, or ABS_TOL of each other
# near zero. Means over seeds summed in another order differ in the last bits (97.22222222222223
# against 97.22222222222221); no metric the reports show means anything at 1e-9 relative.
REL_TOL = 1e-9
ABS_TOL = 1e-12


def same(a: float, b: float) -> bool:
    """Whether `a` and `b` are equal within the reports' tolerance (REL_TOL, ABS_TOL)."""
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def at_least(a: float, b: float) -> bool:
    """`a ≥ b` within the reports' tolerance: larger, or the same."""
    return a > b or same(a, b)


def beyond(a: float, b: float) -> bool:
    """`a > b` by more than the reports' tolerance: larger and not the same."""
    return a > b and not same(a, b)


def best_of(items: Sequence[T], *keys: Callable[[T], float]) -> T:
    """The item with the largest keys, compared in turn and tied within `same`; first in order.

    `max(items, key=lambda x: (k1(x), k2(x)))` without letting rounding noise in `k1` decide.
    """
    pool = list(items)
    if not pool:
        raise ValueError("best_of() of nothing")
    for key in keys:
        top = max(key(x) for x in pool)
        pool = [x for x in pool if same(key(x), top)]
    return pool[0]


def pareto_front(costs: Sequence[float], values: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates, sorted by cost; NaN points never count.

    A point dominates another when its cost is lower or the same and its value higher or the
    same, one of them beyond the tolerance (`same`): points equal in both (twins) both stay.
    """
    pts = [
        (c, v, i)
        for i, (c, v) in enumerate(zip(costs, values, strict=True))
        if math.isfinite(c) and math.isfinite(v)
    ]

    def dominates(p: tuple[float, float, int], q: tuple[float, float, int]) -> bool:
        cheaper, better = beyond(q[0], p[0]), beyond(p[1], q[1])
        return at_least(q[0], p[0]) and at_least(p[1], q[1]) and (cheaper or better)

    front = [q for q in pts if not any(dominates(p, q) for p in pts)]
    return [i for _c, _v, i in sorted(front, key=lambda p: (p[0], -p[1], p[2]))]


def best_indices(values: Sequence[float | None], higher_is_better: bool) -> set[int]:
    """Indices of the best finite value (ties within `same`); empty unless two or more compete."""
    finite = [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return set()
    target = max(v for _, v in finite) if higher_is_better else min(v for _, v in finite)
    return {i for i, v in finite if same(v, target)}
