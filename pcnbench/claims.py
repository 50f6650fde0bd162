"""Claims: a suite's `claims:` judged from its stored results, and its `references:`.

A claim compares the results of a *subject* (cells matching its selectors) with a *baseline*
over the quantities pcnbench stores, each expectation written `OP VALUE[UNIT]`:

- `accuracy`: the difference subject − baseline in percentage points (`pp` optional);
- `compression`, `speedup`: the ratio baseline/subject of params (of MACs) (`x` optional);
- any other quantity: with `x`, the ratio subject/baseline; a plain number, the difference
  subject − baseline in the quantity's unit (seconds, joules, ...).

Subject and baseline pair by dataset, model (unless the selectors fix the model differently
on the two sides: then by dataset alone) and seed. Each operating point of the subject (a
method setting, or one of a cell's rows told apart by `Method.point_keys`) is judged with a
95% Student-t interval: of the per-seed differences (log-ratios for ratios) where the two
sides have the same seeds, else (no seed in common) Welch's interval of the difference of
means. A point is supported when the whole interval satisfies every expectation, refuted when
the whole interval violates one, inconclusive otherwise (or with one seed: no interval). The
claim (`over: any`, the default) is supported when some point is, refuted when every point
is; with `over: all` it is supported when every point is, refuted when some point is. A
failed or missing cell (a seed one side has and the other lacks) or a quantity the results
lack makes it "not evaluated", with the reason.

A baseline may instead name one of the suite's `references:` (`baseline: {reference: LABEL}`),
a published figure: the subject's operating points on the reference's dataset are judged by a
one-sample Student-t interval of their per-seed values around the published one (accuracy,
params and MACs, so compression and speedup too), with the same expectations and verdicts;
`accuracy: ">= -2pp"` then reads "reproduces the published accuracy within 2 points".
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import ValidationError

from pcnbench.cells import grid_label
from pcnbench.contracts import ClaimCheck, ClaimPoint, ClaimResult, Reference, ReportData
from pcnbench.errors import SuiteError
from pcnbench.labels import is_missing, json_object, result_tags
from pcnbench.schema import (
    ClaimSpec,
    Pick,
    ReferenceBaseline,
    ReferenceSpec,
    Selector,
    pydantic_error,
)
from pcnbench.stats import Estimate, mean_ci, paired_delta, welch_delta
from pcnbench.yamlsrc import Source, load_text

__all__ = [
    "QUANTITIES",
    "REFERENCE_QUANTITIES",
    "VERDICTS",
    "Expectation",
    "Quantity",
    "exit_code",
    "format_check",
    "format_claims",
    "judge_claim",
    "judge_claims",
    "pairs_by_model",
    "parse_expectation",
    "pick_label",
    "read_claims",
    "read_references",
    "reference_value",
    "selector_label",
    "selects",
]

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_EVALUATED = (
    "supported",
    "refuted",
    "inconclusive",
    "not evaluated",
)
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_EVALUATED)


@dataclass(frozen=True)
class Quantity:
    """A quantity a claim may name: the result column it reads and how it compares."""

    name: str
    column: str  # the result column read on both sides
    unit: str  # the quantity's own unit, for a plain difference ("" for counts)
    kind: str  # "pp": difference ×100; "inverse": baseline/subject ratio; "plain": either


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("accuracy", "accuracy", "pp", "pp"),
        Quantity("compression", "params", "x", "inverse"),
        Quantity("speedup", "macs", "x", "inverse"),
        Quantity("params", "params", "", "plain"),
        Quantity("macs", "macs", "", "plain"),
        Quantity("train_time_s", "train_time_s", "s", "plain"),
        Quantity("incurred_time_s", "incurred_time_s", "s", "plain"),
        Quantity("train_energy_j", "train_energy_j", "J", "plain"),
        Quantity("latency_ms", "latency_ms", "ms", "plain"),
        Quantity("latency_ratio", "latency_ratio", "", "plain"),
        Quantity("epochs_trained", "epochs_trained", "epochs", "plain"),
    )
}

# What a published reference states: the quantities a claim can hold against it.
REFERENCE_QUANTITIES = {"accuracy": "accuracy", "params": "params", "macs": "macs"}

_OPS = {">=": ">=", "≥": ">=", ">": ">", "<=": "<=", "≤": "<=", "<": "<"}
_EXPECT = re.compile(
    r"^\s*(?P<op>[<>=!≥≤]+)?\s*(?P<num>[-+−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"\s*(?P<unit>[^\s\d]*)\s*$"
)
_REL_TOL, _ABS_TOL = 1e-9, 1e-12  # the reports' tolerance for "the same number"


@dataclass(frozen=True)
class Expectation:
    """One parsed expectation: `quantity OP value` with the value in `unit` ("pp", "x", ...)."""

    quantity: str
    op: str
    value: float
    unit: str
    text: str  # as written
    ratio: bool  # judged on ratios (log scale), else on differences

    def describe(self) -> str:
        """`accuracy >= -0.5pp`, `train_time_s < 1x`."""
        return f"{self.quantity} {self.text.strip()}"


def parse_expectation(quantity: str, text: Any) -> Expectation:
    """Parse `OP VALUE[UNIT]` for `quantity`; ValueError saying what is wrong (KeyError: quantity).

    KeyError carries a did-you-mean message for a quantity pcnbench does not store.
    """
    q = QUANTITIES.get(quantity)
    if q is None:
        close = difflib.get_close_matches(quantity, list(QUANTITIES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(
            f"unknown quantity '{quantity}'{hint} (a claim compares {', '.join(QUANTITIES)})"
        )
    example = {"pp": "'>= -0.5pp'", "inverse": "'>= 10'"}.get(q.kind, "'< 1x' or '<= 60'")
    if not isinstance(text, str):
        raise ValueError(
            f"write the expectation as a quoted string OP VALUE, e.g. {example} "
            f"(got {text!r}; OP is >=, >, <= or <)"
        )
    match = _EXPECT.match(text)
    if match is None:
        raise ValueError(f"cannot read {text!r}: write OP VALUE[UNIT], e.g. {example}")
    op = match["op"]
    if op is None or op not in _OPS:
        got = f"'{op}'" if op else "no operator"
        raise ValueError(f"{got} in {text!r}: the operator is >=, >, <= or < (≥ and ≤ too)")
    value = float(match["num"].replace("−", "-"))
    unit = match["unit"].replace("×", "x")
    if q.kind == "pp":
        if unit not in ("", "pp"):
            raise ValueError(
                f"unit '{unit}' in {text!r}: accuracy compares as the difference subject − "
                "baseline in percentage points (write pp or nothing, e.g. '>= -0.5pp')"
            )
        return Expectation(quantity, _OPS[op], value, "pp", text, ratio=False)
    if q.kind == "inverse":
        if unit not in ("", "x"):
            raise ValueError(
                f"unit '{unit}' in {text!r}: {quantity} is the ratio baseline/subject of "
                f"{q.column} (write x or nothing, e.g. '>= 10')"
            )
        ratio = True
    else:
        if unit not in ("", "x"):
            own = f", or nothing for a difference in {q.unit}" if q.unit else ""
            raise ValueError(
                f"unit '{unit}' in {text!r}: write x for the ratio subject/baseline{own} "
                "(a plain number is the difference subject − baseline)"
            )
        ratio = unit == "x"
    if ratio and value <= 0:
        raise ValueError(f"{text!r}: a ratio bound must be positive (got {value:g})")
    return Expectation(quantity, _OPS[op], value, "x" if ratio else q.unit, text, ratio=ratio)


def pick_label(pick: Pick) -> str:
    """`resnet(depth=20,width=4)`, or the bare name: the way cell labels show a setting."""
    if not pick.params:
        return pick.name
    inner = ",".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in pick.params.items()
    )
    return f"{pick.name}({inner})"


def selector_label(selector: Selector | ReferenceBaseline) -> str:
    """`model=resnet(depth=20), method=pcn`, or `reference 'CNN (Greydanus & Kobak 2024)'`."""
    if isinstance(selector, ReferenceBaseline):
        return f"reference '{selector.reference}'"
    parts = [
        f"{axis}={pick_label(pick)}"
        for axis in ("dataset", "model", "method")
        if (pick := getattr(selector, axis)) is not None
    ]
    return ", ".join(parts) or "every cell"


def _suite_source(text: str) -> Source | None:
    try:
        source = load_text(text, "<stored suite>")
    except SuiteError:
        return None
    return source if isinstance(source.data, dict) else None


def read_references(suite_text: str) -> list[Reference]:
    """The `references:` of a stored suite text (an entry that no longer validates is skipped)."""
    source = _suite_source(suite_text) if suite_text else None
    raw = source.data.get("references") if source is not None else None
    out: list[Reference] = []
    for entry in raw if isinstance(raw, list) else []:
        try:
            spec = ReferenceSpec.model_validate(entry)
        except ValidationError:
            continue
        out.append(
            Reference(
                label=spec.label,
                source=spec.source,
                dataset=spec.dataset,
                model=pick_label(spec.model) if spec.model is not None else None,
                accuracy=spec.accuracy,
                params=spec.params,
                macs=spec.macs,
            )
        )
    return out


def read_claims(suite_text: str) -> list[tuple[ClaimSpec | None, str, str]]:
    """Each claim of a stored suite text: (spec, name, problem); spec None when it is invalid."""
    source = _suite_source(suite_text) if suite_text else None
    raw = source.data.get("claims") if source is not None else None
    out: list[tuple[ClaimSpec | None, str, str]] = []
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        name = str(entry.get("name") or f"claims[{i}]") if isinstance(entry, dict) else f"[{i}]"
        try:
            spec = ClaimSpec.model_validate(entry)
        except ValidationError as exc:
            assert source is not None
            error = pydantic_error(exc, source, ("claims", i), ClaimSpec)
            out.append((None, name, f"the stored suite's claim does not validate: {error}"))
            continue
        problem = ""
        for key, text in spec.expect.items():
            try:
                parse_expectation(key, text)
            except (KeyError, ValueError) as exc:
                problem = str(exc.args[0])
                break
        out.append((spec if not problem else None, name, problem))
    return out


# ---------------------------------------------------------------------------------------------
# judging


def _object(value: Any) -> dict[str, Any]:
    return json_object(value) or {}


def _matches(pick: Pick | None, row: pd.Series, axis: str) -> bool:
    """Whether a cell (a row of the cells or results frame) matches one axis of a selector."""
    if pick is None:
        return True
    if str(row.get(axis)) != pick.name:
        return False
    setting = _object(row.get(f"{axis}_setting"))
    full = _object(row.get(f"{axis}_params"))
    return all(setting.get(k, full.get(k)) == v for k, v in pick.params.items())


def selects(selector: Selector, row: pd.Series) -> bool:
    """Whether a stored cell matches every axis the selector names."""
    return all(_matches(getattr(selector, a), row, a) for a in ("dataset", "model", "method"))


def pairs_by_model(spec: ClaimSpec) -> bool:
    """False when the selectors fix the model differently on the two sides (pair by dataset)."""
    if isinstance(spec.baseline, ReferenceBaseline):
        return False  # a published figure stands for its dataset
    a, b = spec.subject.model, spec.baseline.model
    return a is None or b is None or (a.name == b.name and a.params == b.params)


def _key(value: Any) -> str:
    return json.dumps(_object(value), sort_keys=True, default=str)


def _pair_key(row: pd.Series, by_model: bool) -> tuple[str, ...]:
    key = (str(row.get("dataset")), _key(row.get("dataset_params")))
    if by_model:
        key += (str(row.get("model")), _key(row.get("model_params")))
    return key


def _short(name: Any, setting: Any) -> str:
    return grid_label(str(name), _object(setting))


@dataclass
class _Point:
    """The rows of one operating point: one per seed."""

    label: str
    pair: tuple[str, ...]
    group: str  # dataset · model
    rows: dict[int, pd.Series]
    cells: list[str]


def _points(
    results: pd.DataFrame, cell_ids: Iterable[str], by_model: bool, keys_of: dict[str, tuple]
) -> list[_Point]:
    """The operating points the results of `cell_ids` make, in the order the results list them."""
    wanted = set(cell_ids)
    done = results[results["cell_id"].isin(wanted) & (results["status"] == "done")]
    points: dict[tuple, _Point] = {}
    for _cell_id, rows in done.groupby("cell_id", sort=False):
        first = rows.iloc[0]
        method = str(first["method"])
        tags = result_tags(rows, keys_of.get(method, ()))
        setting = _short(method, first.get("method_setting"))
        group = " · ".join(
            (
                _short(first["dataset"], first.get("dataset_setting")),
                _short(first["model"], first.get("model_setting")),
            )
        )
        for tag, (_, row) in zip(tags, rows.iterrows(), strict=True):
            pkey = (
                _pair_key(first, True),
                method,
                _key(first.get("method_params")),
                tag,
            )
            if pkey not in points:
                label = f"{setting} {tag}".strip()
                points[pkey] = _Point(label, _pair_key(first, by_model), group, {}, [])
            point = points[pkey]
            point.rows[int(row["seed"])] = row
            if str(row["cell_id"]) not in point.cells:
                point.cells.append(str(row["cell_id"]))
    return list(points.values())


def _values(point: _Point, q: Quantity) -> dict[int, float]:
    out = {}
    for seed, row in point.rows.items():
        value = row.get(q.column)
        if is_missing(value):
            continue
        try:
            out[seed] = float(value)
        except (TypeError, ValueError):
            continue
    return out


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


def _check(exp: Expectation, subject: _Point, baseline: _Point) -> tuple[ClaimCheck | None, str]:
    """Judge one expectation at one operating point; (None, why) when the data cannot."""
    q = QUANTITIES[exp.quantity]
    s, b = _values(subject, q), _values(baseline, q)
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
    return _judged(exp, est, 0.0, paired=paired), ""


def _judged(
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


def _labels(cells: pd.DataFrame, ids: Iterable[str], limit: int = 3) -> str:
    found = cells.set_index("cell_id") if "cell_id" in cells.columns else cells
    names = []
    for cid in ids:
        label = found["label"].get(cid) if "label" in found.columns else None
        status = found["status"].get(cid) if "status" in found.columns else None
        names.append(f"{label or cid} ({status})")
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(names[:limit]) + more


def judge_claim(spec: ClaimSpec, data: ReportData) -> ClaimResult:
    """Judge one claim against the results in `data` (see the module's docstring)."""
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
        unfinished = picked[picked["status"] != "done"]
        if not unfinished.empty:
            n = len(unfinished)
            return not_evaluated(
                f"{n} {side} cell{'s' if n != 1 else ''} did not finish: "
                + _labels(cells, unfinished["cell_id"])
            )
        sides[side] = [str(c) for c in picked["cell_id"]]
    by_model = pairs_by_model(spec)
    keys_of = {name: tuple(m.point_keys) for name, m in data.methods.items()}
    subjects = _points(data.results, sides["subject"], by_model, keys_of)
    baselines = _points(data.results, sides["baseline"], by_model, keys_of)
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
        judged.append(_claim_point(point, subjects, checks, tuple(partner.cells)))
    return _decided(spec, base, judged)


def reference_value(reference: Reference, quantity: str) -> float | None:
    """The value a reference states for a claim's quantity (None when it states none)."""
    column = QUANTITIES[quantity].column
    if column not in REFERENCE_QUANTITIES:
        return None
    value = getattr(reference, REFERENCE_QUANTITIES[column])
    return None if value is None else float(value)


def _check_reference(exp: Expectation, subject: _Point, published: float) -> ClaimCheck | str:
    """One expectation at one operating point against a published value: a one-sample
    Student-t interval of the subject's per-seed values, shifted by the published one."""
    q = QUANTITIES[exp.quantity]
    s = list(_values(subject, q).values())
    if not s:
        return f"{q.column} is not recorded for the subject ({subject.label}, {subject.group})"
    if exp.ratio:
        if any(v <= 0 for v in s) or published <= 0:
            return f"{q.column} is not positive in every result: no ratio to take"
        s, published = [math.log(v) for v in s], math.log(published)
    est = mean_ci(s)
    assert est is not None
    return _judged(exp, est, published, paired=False, published=True)


def _judge_against_reference(
    spec: ClaimSpec, data: ReportData, exps: list[Expectation], base: ClaimResult
) -> ClaimResult:
    """Judge a claim whose baseline is one of the suite's `references:` (a published figure)."""
    assert isinstance(spec.baseline, ReferenceBaseline)

    def not_evaluated(reason: str, points: tuple[ClaimPoint, ...] = ()) -> ClaimResult:
        return ClaimResult(**{**base.__dict__, "reason": reason, "points": points})

    found = [r for r in read_references(_suite_text(data)) if r.label == spec.baseline.reference]
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
    unfinished = picked[picked["status"] != "done"]
    if not unfinished.empty:
        n = len(unfinished)
        return not_evaluated(
            f"{n} subject cell{'s' if n != 1 else ''} did not finish: "
            + _labels(cells, unfinished["cell_id"])
        )
    keys_of = {name: tuple(m.point_keys) for name, m in data.methods.items()}
    subjects = _points(data.results, [str(c) for c in picked["cell_id"]], False, keys_of)
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
        judged.append(_claim_point(point, subjects, checks, ()))
    return _decided(spec, base, judged)


def _claim_point(
    point: _Point, subjects: list[_Point], checks: list[ClaimCheck], baseline: tuple[str, ...]
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


def _decided(spec: ClaimSpec, base: ClaimResult, judged: list[ClaimPoint]) -> ClaimResult:
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


def _suite_text(data: ReportData) -> str:
    runs = data.runs
    if runs.empty or "suite_text" not in runs.columns:
        return ""
    text = runs["suite_text"].iloc[-1]
    return text if isinstance(text, str) else ""


def judge_claims(data: ReportData) -> list[ClaimResult]:
    """Every claim of the suite text stored with the last run, judged from `data`'s results."""
    out = []
    for spec, name, problem in read_claims(_suite_text(data)):
        if spec is None:
            out.append(ClaimResult(name=name, verdict=NOT_EVALUATED, reason=problem))
        else:
            out.append(judge_claim(spec, data))
    return out


def exit_code(claims: Sequence[ClaimResult]) -> int:
    """1 when a claim is refuted (a CI job can guard a result with it), else 0."""
    return 1 if any(c.verdict == REFUTED for c in claims) else 0


def _num(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return str(x)
    text = f"{x:.3g}" if abs(x) >= 1000 or (x != 0 and abs(x) < 0.01) else f"{x:.2f}"
    if signed and x > 0:
        text = "+" + text
    return text.replace("-", "−")


def format_check(check: ClaimCheck) -> str:
    """`accuracy −0.21 pp [−0.50, +0.08] ≥ −0.5 ✓` style: the numbers that decided one check."""
    unit = {"x": "×", "": ""}.get(check.unit, f" {check.unit}")
    op = {">=": "≥", "<=": "≤"}.get(check.op, check.op)
    mark = {SUPPORTED: "✓", REFUTED: "✗"}.get(check.verdict, "?")
    how = (
        f"{check.n} seeds vs the published value"
        if check.published
        else f"paired, {check.n} seeds"
        if check.paired
        else f"Welch, n={check.n}"
    )
    signed = check.unit != "x"
    interval = (
        f"95% CI {_num(check.low, signed)} … {_num(check.high, signed)}"
        if check.n >= 2
        else "no interval: one seed"
    )
    return (
        f"{check.quantity} {_num(check.estimate, signed)}{unit} ({interval}; {how}) "
        f"{op} {_num(check.value)}{unit} {mark}"
    )


def format_claims(claims: Sequence[ClaimResult], where: str = "", width: int = 0) -> str:
    """The claims as a plain-text table: verdict, name, and per operating point the numbers.

    With `width`, lines longer than it wrap under their own indent (0: no wrapping).
    """
    text = _format_claims(claims, where)
    if width <= 0:
        return text
    import textwrap

    out = []
    for line in text.split("\n"):
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out.extend(
            textwrap.wrap(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False)
            or [""]
        )
    return "\n".join(out)


def _format_claims(claims: Sequence[ClaimResult], where: str) -> str:
    if not claims:
        return f"no claims: the suite{f' in {where}' if where else ''} declares none\n"
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    head = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines = [f"claims{f' of {where}' if where else ''}: {head}", ""]
    width = max(len(v) for v in VERDICTS)
    for claim in claims:
        lines.append(f"{claim.verdict.upper():<{width}}  {claim.name}")
        pad = " " * (width + 2)
        if claim.subject:
            over = "" if claim.over == "any" else " (over all operating points)"
            lines.append(
                f"{pad}{claim.subject} vs {claim.baseline}: {'; '.join(claim.expect)}{over}"
            )
            if claim.source:
                lines.append(f"{pad}published in: {claim.source}")
        if claim.reason:
            lines.append(f"{pad}not evaluated: {claim.reason}")
        for point in claim.points:
            star = " ←" if point.label == claim.decided_by and len(claim.points) > 1 else ""
            lines.append(f"{pad}{point.label}: {point.verdict}{star}")
            for check in point.checks:
                lines.append(f"{pad}  {format_check(check)}")
        lines.append("")
    return "\n".join(lines)
