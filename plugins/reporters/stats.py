"""The statistics the reports print: t intervals over seeds, paired deltas, Pareto frontiers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t distribution with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom (e.g. 0.975, 2 → 4.303)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):  # bisection: the cdf is monotone and cheap
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95% half-width (None when n < 2) and the sample std."""

    mean: float
    half_width: float | None
    n: int
    std: float | None

    @property
    def low(self) -> float:
        """Lower end of the interval (the mean itself without one)."""
        return self.mean - (self.half_width or 0.0)

    @property
    def high(self) -> float:
        """Upper end of the interval (the mean itself without one)."""
        return self.mean + (self.half_width or 0.0)


def _finite(values: Iterable[float | None]) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def mean_ci(values: Iterable[float | None], level: float = 0.95) -> Estimate | None:
    """Mean ± t·s/√n over the finite values (Student t); no interval for n = 1, None for n = 0."""
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return None
    mean = math.fsum(xs) / n
    if n == 1:
        return Estimate(mean, None, 1, None)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return Estimate(mean, half, n, std)


def paired_delta(
    method: dict[int, float], dense: dict[int, float], level: float = 0.95
) -> Estimate | None:
    """Mean ± CI of method − dense over the seeds both have (None when they share none)."""
    seeds = sorted(set(method) & set(dense))
    return mean_ci([method[s] - dense[s] for s in seeds], level)


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
