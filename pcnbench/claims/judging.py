"""Judging claims: each operating point of the subject against its baseline's, or against a
published reference, with a 95% Student-t interval (see `pcnbench.claims`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from pcnbench.claims.expectations import (
    QUANTITIES,
    REFERENCE_QUANTITIES,
    Expectation,
    parse_expectation,
    selector_label,
)
from pcnbench.claims.points import Point, operating_points, pairs_by_model, point_values, selects
from pcnbench.claims.stored import read_claims, read_references, stored_suite_text
from pcnbench.claims.verdicts import NOT_EVALUATED, decided, interval_check, judged_point
from pcnbench.contracts import ClaimCheck, ClaimPoint, ClaimResult, Reference, ReportData
from pcnbench.schema import ClaimSpec, ReferenceBaseline
from pcnbench.stats import Estimate, mean_ci, paired_delta, welch_delta

__all__ = ["judge_claim", "judge_claims", "reference_value"]


def _check(exp: Expectation, subject: Point, baseline: Point) -> tuple[ClaimCheck | None, str]:
    """Judge one expectation at one operating point; (None, why) when the data cannot."""
    q = QUANTITIES[exp.quantity]
    s, b = point_values(subject, q), point_values(baseline, q)
    side = "subject" if not s else "baseline" if not b else ""
    if side:
        return None, (
            f"{q.column} is not recorded for the {side} "
            f"({subject.label if side == 'subject' else baseline.label}, {subject.group})"
        )
    if exp.ratio:
        if any(v <= 0 for v in (*s.values(), *b.values())):
            return None, f"{q.column} is not positive in every result: no ratio to take"
        s = {k: math.log(v) for k, v in s.items()}
        b = {k: math.log(v) for k, v in b.items()}
    paired = bool(set(s) & set(b))
    est: Estimate | None
    est = paired_delta(s, b) if paired else welch_delta(list(s.values()), list(b.values()))
    assert est is not None  # both sides have values
    return interval_check(exp, est, 0.0, paired=paired), ""


def _labels(cells: pd.DataFrame, ids: Iterable[str], limit: int = 3) -> str:
    found = cells.set_index("cell_id") if "cell_id" in cells.columns else cells
    names = []
    for cid in ids:
        label = found["label"].get(cid) if "label" in found.columns else None
        status = found["status"].get(cid) if "status" in found.columns else None
        names.append(f"{label or cid} ({status})")
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(names[:limit]) + more


def _unfinished(cells: pd.DataFrame, picked: pd.DataFrame, side: str) -> str:
    """Why the `side`'s `picked` cells cannot be judged yet: those that did not finish ("" none)."""
    unfinished = picked[picked["status"] != "done"]
    if unfinished.empty:
        return ""
    n = len(unfinished)
    return f"{n} {side} cell{'s' if n != 1 else ''} did not finish: " + _labels(
        cells, unfinished["cell_id"]
    )


def judge_claim(spec: ClaimSpec, data: ReportData) -> ClaimResult:
    """Judge one claim against the results in `data` (see `pcnbench.claims`)."""
    exps = [parse_expectation(k, v) for k, v in spec.expect.items()]
    base = ClaimResult(
        name=spec.name,
        verdict=NOT_EVALUATED,
        over=spec.over,
        subject=selector_label(spec.subject),
        baseline=selector_label(spec.baseline),
        expect=tuple(e.describe() for e in exps),
    )

    def not_evaluated(reason: str, points: tuple[ClaimPoint, ...] = ()) -> ClaimResult:
        return ClaimResult(**{**base.__dict__, "reason": reason, "points": points})

    cells = data.cells
    if cells.empty or "cell_id" not in cells.columns:
        return not_evaluated("the results hold no cells")
    if isinstance(spec.baseline, ReferenceBaseline):
        return _judge_against_reference(spec, data, exps, base)
    sides = {}
    for side in ("subject", "baseline"):
        selector = getattr(spec, side)
        picked = cells[[selects(selector, row) for _, row in cells.iterrows()]]
        if picked.empty:
            return not_evaluated(
                f"no cell in the results matches the {side} ({selector_label(selector)})"
            )
        unfinished = _unfinished(cells, picked, side)
        if unfinished:
            return not_evaluated(unfinished)
        sides[side] = [str(c) for c in picked["cell_id"]]
    by_model = pairs_by_model(spec)
    keys_of = {name: tuple(m.point_keys) for name, m in data.methods.items()}
    subjects = operating_points(data.results, sides["subject"], by_model, keys_of)
    baselines = operating_points(data.results, sides["baseline"], by_model, keys_of)
    if not subjects:
        return not_evaluated("the subject's cells recorded no result")
    judged: list[ClaimPoint] = []
    for point in subjects:
        partners = [b for b in baselines if b.pair == point.pair]
        if not partners:
            return not_evaluated(f"no baseline result for {point.group} (the baseline's cells)")
        if len(partners) > 1:
            names = ", ".join(b.label for b in partners)
            return not_evaluated(
                f"the baseline has {len(partners)} operating points for {point.group} ({names});"
                " narrow its selector to one"
            )
        partner = partners[0]
        mine, theirs = set(point.rows), set(partner.rows)
        if mine & theirs and mine != theirs:
            lacking, side = (point, theirs - mine) if theirs - mine else (partner, mine - theirs)
            seeds = ", ".join(str(x) for x in sorted(side))
            return not_evaluated(
                f"{lacking.label} ({point.group}) has no result for seed {seeds}, which the "
                "other side has: a cell is missing from the results (run the suite again)"
            )
        checks = []
        for exp in exps:
            check, why = _check(exp, point, partner)
            if check is None:
                return not_evaluated(why, tuple(judged))
            checks.append(check)
        judged.append(judged_point(point, subjects, checks, tuple(partner.cells)))
    return decided(spec, base, judged)


def reference_value(reference: Reference, quantity: str) -> float | None:
    """The value a reference states for a claim's quantity (None when it states none)."""
    column = QUANTITIES[quantity].column
    if column not in REFERENCE_QUANTITIES:
        return None
    value = getattr(reference, REFERENCE_QUANTITIES[column])
    return None if value is None else float(value)


def _check_reference(exp: Expectation, subject: Point, published: float) -> ClaimCheck | str:
    """One expectation at one operating point against a published value: a one-sample
    Student-t interval of the subject's per-seed values, shifted by the published one."""
    q = QUANTITIES[exp.quantity]
    s = list(point_values(subject, q).values())
    if not s:
        return f"{q.column} is not recorded for the subject ({subject.label}, {subject.group})"
    if exp.ratio:
        if any(v <= 0 for v in s) or published <= 0:
            return f"{q.column} is not positive in every result: no ratio to take"
        s, published = [math.log(v) for v in s], math.log(published)
    est = mean_ci(s)
    assert est is not None
    return interval_check(exp, est, published, paired=False, published=True)


def _judge_against_reference(
    spec: ClaimSpec, data: ReportData, exps: list[Expectation], base: ClaimResult
) -> ClaimResult:
    """Judge a claim whose baseline is one of the suite's `references:` (a published figure)."""
    assert isinstance(spec.baseline, ReferenceBaseline)

    def not_evaluated(reason: str, points: tuple[ClaimPoint, ...] = ()) -> ClaimResult:
        return ClaimResult(**{**base.__dict__, "reason": reason, "points": points})

    references = read_references(stored_suite_text(data))
    found = [r for r in references if r.label == spec.baseline.reference]
    if not found:
        return not_evaluated(f"the suite lists no reference '{spec.baseline.reference}'")
    reference = found[0]
    base = ClaimResult(**{**base.__dict__, "source": reference.source})
    cells = data.cells
    picked = cells[[selects(spec.subject, row) for _, row in cells.iterrows()]]
    picked = picked[picked["dataset"].astype(str) == reference.dataset]
    if picked.empty:
        return not_evaluated(
            f"no cell in the results matches the subject ({selector_label(spec.subject)}) on "
            f"the reference's dataset '{reference.dataset}'"
        )
    unfinished = _unfinished(cells, picked, "subject")
    if unfinished:
        return not_evaluated(unfinished)
    keys_of = {name: tuple(m.point_keys) for name, m in data.methods.items()}
    subjects = operating_points(data.results, [str(c) for c in picked["cell_id"]], False, keys_of)
    if not subjects:
        return not_evaluated("the subject's cells recorded no result")
    judged: list[ClaimPoint] = []
    for point in subjects:
        checks = []
        for exp in exps:
            published = reference_value(reference, exp.quantity)
            if published is None:
                return not_evaluated(
                    f"the reference '{reference.label}' states no {exp.quantity}", tuple(judged)
                )
            check = _check_reference(exp, point, published)
            if isinstance(check, str):
                return not_evaluated(check, tuple(judged))
            checks.append(check)
        judged.append(judged_point(point, subjects, checks, ()))
    return decided(spec, base, judged)


def judge_claims(data: ReportData) -> list[ClaimResult]:
    """Every claim of the suite text stored with the last run, judged from `data`'s results."""
    out = []
    for spec, name, problem in read_claims(stored_suite_text(data)):
        if spec is None:
            out.append(ClaimResult(name=name, verdict=NOT_EVALUATED, reason=problem))
        else:
            out.append(judge_claim(spec, data))
    return out
