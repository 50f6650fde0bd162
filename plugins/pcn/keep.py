"""Keep rules: how many principal components a layer keeps (`d64`, `f0.25`, `v0.999`, `t1e-3`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["KeepRule", "choose_k", "explained_fraction", "k_from_width", "parse_keep"]

_RULE = re.compile(r"^([dfvt])(.+)$")
_RULE_FORMS = (
    "d<count> (e.g. d64: that many components), f<fraction> (f0.25: of the input width), "
    "v<variance> (v0.999: cumulative explained variance) or t<threshold> (t1e-3: eigenvalues "
    "at least this)"
)


@dataclass(frozen=True)
class KeepRule:
    """A parsed keep rule: `kind` is d, f, v or t and `value` its number; `text` the original."""

    kind: str
    value: float
    text: str


def parse_keep(rule: str) -> KeepRule:
    """Parse a keep rule (`d64`, `f0.25`, `v0.999`, `t1e-3`); ValueError says what is accepted."""
    if not isinstance(rule, str):
        raise ValueError(f"keep rule must be a string, got {rule!r}; expected {_RULE_FORMS}")
    match = _RULE.match(rule.strip())
    if match is None:
        raise ValueError(f"invalid keep rule {rule!r}; expected {_RULE_FORMS}")
    kind, number = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"invalid keep rule {rule!r}: {number!r} is not a number") from None
    if kind == "d" and not (number.isdigit() and int(number) >= 1):
        raise ValueError(f"invalid keep rule {rule!r}: d takes a whole count ≥ 1 (e.g. d64)")
    if kind in "fv" and not 0 < value <= 1:
        raise ValueError(f"invalid keep rule {rule!r}: {kind} takes a fraction in (0, 1]")
    if kind == "t" and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"invalid keep rule {rule!r}: t takes a finite threshold ≥ 0")
    return KeepRule(kind, value, rule.strip())


def _as_rule(rule: str | KeepRule) -> KeepRule:
    return rule if isinstance(rule, KeepRule) else parse_keep(rule)


def _nonnegative(eigenvalues: Sequence[float] | torch.Tensor) -> torch.Tensor:
    import torch  # here: parsing a rule (what validation does) needs no torch

    # Covariance eigenvalues are ≥ 0; slightly negative ones are rounding.
    return torch.as_tensor(eigenvalues, dtype=torch.float64).clamp(min=0)


def choose_k(rule: str | KeepRule, eigenvalues: Sequence[float] | torch.Tensor) -> int:
    """Components to keep (1..d) under `rule`, given the d eigenvalues in descending order.

    d: min(d, count); f: ceil(fraction · d); v: the smallest k whose cumulative explained
    variance is ≥ the fraction; t: the eigenvalues ≥ the threshold. At least one is kept.
    """
    rule = _as_rule(rule)
    e = _nonnegative(eigenvalues)
    d = len(e)
    if d == 0:
        raise ValueError("choose_k needs at least one eigenvalue")
    if rule.kind in "df":
        return _by_width(rule, d)
    if rule.kind == "v":
        cumulative = e.cumsum(0)
        total = float(cumulative[-1])
        k = d if total <= 0 else int((cumulative / total < rule.value).sum()) + 1
    else:
        k = int((e >= rule.value).sum())
    return max(1, min(d, k))


def k_from_width(rule: str | KeepRule, d: int) -> int | None:
    """Components a d or f rule keeps of an input d wide; None for v and t (the data decide)."""
    rule = _as_rule(rule)
    return _by_width(rule, d) if rule.kind in "df" else None


def _by_width(rule: KeepRule, d: int) -> int:
    if rule.kind == "d":
        return max(1, min(d, int(rule.value)))
    # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, not above 3.
    return max(1, min(d, math.ceil(round(rule.value * d, 9))))


def explained_fraction(eigenvalues: Sequence[float] | torch.Tensor, k: int) -> float:
    """Fraction of the total variance the top `k` of the (descending) eigenvalues explain."""
    e = _nonnegative(eigenvalues)
    total = float(e.sum())
    return 1.0 if total <= 0 else float(e[:k].sum()) / total
