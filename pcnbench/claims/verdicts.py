"""From intervals to verdicts: of one expectation, of an operating point, of a claim."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pcnbench.claims.expectations import QUANTITIES, Expectation
from pcnbench.claims.points import Point
from pcnbench.contracts import ClaimCheck, ClaimPoint, ClaimResult
from pcnbench.schema import ClaimSpec
from pcnbench.stats import Estimate

__all__ = [
    "INCONCLUSIVE",
    "NOT_EVALUATED",
    "REFUTED",
    "SUPPORTED",
    "VERDICTS",
    "decided",
    "exit_code",
    "interval_check",
    "judged_point",
]

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_EVALUATED = (
    "supported",
    "refuted",
    "inconclusive",
    "not evaluated",
)
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_EVALUATED)
_REL_TOL, _ABS_TOL = 1e-9, 1e-12  # the reports' tolerance for "the same number"


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def _holds(x: float, op: str, bound: float) -> bool:
    """`x OP bound` with the reports' tolerance (a ≥ that is equal within it holds)."""
    if op == ">=":
        return x > bound or _same(x, bound)
    if op == ">":
        return x > bound and not _same(x, bound)
    if op == "<=":
        return x < bound or _same(x, bound)
    return x < bound and not _same(x, bound)


def _verdict(low: float, high: float, op: str, bound: float) -> str:
    """Supported when the whole interval satisfies `OP bound`, refuted when all of it violates."""
    if _holds(low, op, bound) and _holds(high, op, bound):
        return SUPPORTED
    if not _holds(low, op, bound) and not _holds(high, op, bound):
        return REFUTED
    return INCONCLUSIVE


def interval_check(
    exp: Expectation, est: Estimate, shift: float, *, paired: bool, published: bool = False
) -> ClaimCheck:
    """The check an interval (of differences, or of values less `shift`) makes of `exp`.

    `est` is on the quantity's comparison scale (log for ratios); the result is in the
    expectation's own terms: percentage points, a ratio, or the quantity's unit.
    """
    q = QUANTITIES[exp.quantity]
    mean, low, high = est.mean - shift, est.low - shift, est.high - shift
    if q.kind == "inverse":  # baseline/subject: the negated log-difference
        mean, low, high = -mean, -high, -low
    if exp.ratio:
        mean, low, high = math.exp(mean), math.exp(low), math.exp(high)
    elif q.kind == "pp":
        mean, low, high = 100.0 * mean, 100.0 * low, 100.0 * high
    verdict = _verdict(low, high, exp.op, exp.value) if est.half_width is not None else INCONCLUSIVE
    return ClaimCheck(
        quantity=exp.quantity,
        expect=exp.text.strip(),
        op=exp.op,
        value=exp.value,
        unit=exp.unit,
        estimate=mean,
        low=low,
        high=high,
        n=est.n,
        paired=paired,
        verdict=verdict,
        published=published,
    )


def _combine(verdicts: Sequence[str], over: str) -> str:
    if over == "all":
        if verdicts and all(v == SUPPORTED for v in verdicts):
            return SUPPORTED
        return REFUTED if REFUTED in verdicts else INCONCLUSIVE
    if SUPPORTED in verdicts:
        return SUPPORTED
    return REFUTED if verdicts and all(v == REFUTED for v in verdicts) else INCONCLUSIVE


def judged_point(
    point: Point, subjects: list[Point], checks: list[ClaimCheck], baseline: tuple[str, ...]
) -> ClaimPoint:
    """One operating point judged: refuted when a check is, supported when all are."""
    verdicts = [c.verdict for c in checks]
    verdict = (
        REFUTED
        if REFUTED in verdicts
        else SUPPORTED
        if set(verdicts) == {SUPPORTED}
        else INCONCLUSIVE
    )
    label = point.label
    if len({p.group for p in subjects}) > 1:
        label = f"{point.group} · {label}"
    return ClaimPoint(label, verdict, tuple(checks), tuple(point.cells), baseline)


def decided(spec: ClaimSpec, base: ClaimResult, judged: list[ClaimPoint]) -> ClaimResult:
    """The claim's verdict from its operating points', and the point that decided it."""
    verdicts = [p.verdict for p in judged]
    verdict = _combine(verdicts, spec.over)
    decided_by = ""
    if verdict == SUPPORTED and spec.over == "any":
        decided_by = next(p.label for p in judged if p.verdict == SUPPORTED)
    elif verdict == REFUTED and spec.over == "all":
        decided_by = next(p.label for p in judged if p.verdict == REFUTED)
    elif len(judged) == 1:
        decided_by = judged[0].label
    return ClaimResult(
        **{**base.__dict__, "verdict": verdict, "points": tuple(judged), "decided_by": decided_by}
    )


def exit_code(claims: Sequence[ClaimResult]) -> int:
    """1 when a claim is refuted (a CI job can guard a result with it), else 0."""
    return 1 if any(c.verdict == REFUTED for c in claims) else 0
