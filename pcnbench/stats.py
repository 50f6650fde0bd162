"""Statistics over seeds: Student-t intervals, paired and Welch differences between two sides.

The report's tables and the claims (`pcnbench claims`) use these alike; plugins reach them
through `pcnbench.api`. The t distribution is SciPy's (`scipy.stats.t`), imported only when an
interval is computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Estimate",
    "mean_ci",
    "paired_delta",
    "student_t_cdf",
    "t_quantile",
    "welch_delta",
]


def _check_df(df: float) -> None:
    if not df > 0:  # also rejects NaN
        raise ValueError(f"df must be positive, got {df}")


def student_t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with `df` degrees of freedom (> 0; fractional for Welch)."""
    _check_df(df)
    # imported here, not at the top: SciPy costs about a second, and validation and cell
    # processes import this module without ever computing an interval
    from scipy.stats import t as student_t

    return float(student_t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom (e.g. 0.975, 2 → 4.303)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    _check_df(df)
    from scipy.stats import t as student_t  # here, not at the top: see student_t_cdf

    return float(student_t.ppf(p, df))


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


def welch_delta(
    a: Iterable[float | None], b: Iterable[float | None], level: float = 0.95
) -> Estimate | None:
    """Mean ± CI of mean(a) − mean(b) for unpaired samples (Welch's t; no interval below n = 2).

    `n` is the smaller sample's size and `std` the standard error of the difference. None when
    either side has no finite value.
    """
    xs, ys = _finite(a), _finite(b)
    if not xs or not ys:
        return None
    mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    n = min(len(xs), len(ys))
    if n < 2:
        return Estimate(mx - my, None, n, None)
    vx = math.fsum((x - mx) ** 2 for x in xs) / (len(xs) - 1) / len(xs)
    vy = math.fsum((y - my) ** 2 for y in ys) / (len(ys) - 1) / len(ys)
    se = math.sqrt(vx + vy)
    if se == 0.0:
        return Estimate(mx - my, 0.0, n, 0.0)
    df = (vx + vy) ** 2 / (vx**2 / (len(xs) - 1) + vy**2 / (len(ys) - 1))
    return Estimate(mx - my, t_quantile(0.5 + level / 2.0, df) * se, n, se)
