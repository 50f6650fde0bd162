"""The suite's claims and references, checked against its own cells before anything runs."""

from __future__ import annotations

import difflib
from typing import Any

from pcnbench.cells import Cell, Choice, matches_rule
from pcnbench.claims import (
    QUANTITIES,
    REFERENCE_QUANTITIES,
    pairs_by_model,
    parse_expectation,
    selector_label,
)
from pcnbench.errors import SuiteError
from pcnbench.schema import ClaimSpec, Pick, ReferenceBaseline, Selector
from pcnbench.suite.loaded import LoadedSuite
from pcnbench.yamlsrc import KeyPath


def _pick_error(
    loaded: LoadedSuite, at: KeyPath, axis: str, pick: Pick, raw: Any
) -> SuiteError | None:
    """An error when no grid point of the suite's `axis` matches `pick` (a name or name+params)."""
    source = loaded.source
    choices: list[Choice] = getattr(loaded, axis + "s")
    names = list(dict.fromkeys(c.name for c in choices))
    named = [c for c in choices if c.name == pick.name]
    if not named:
        where = (*at, "name") if isinstance(raw, dict) else at
        return source.error(
            where, f"'{pick.name}' is not one of the suite's {axis}s ({', '.join(names)})"
        )
    for key, want in pick.params.items():
        kept = [c for c in named if c.raw.get(key, getattr(c.params, key, None)) == want]
        if not kept:
            have = sorted(
                {repr(c.raw.get(key, getattr(c.params, key, None))) for c in named}, key=str
            )
            return source.error(
                (*at, "params", key),
                f"no {axis} '{pick.name}' of the suite has {key}={want!r} "
                f"(it has {key} {', '.join(have)})",
            )
        named = kept
    return None


def _cell_group(cell: Cell, by_model: bool) -> str:
    """What a claim pairs cells by: the dataset (and model) grid point."""
    parts = [cell.dataset.label] + ([cell.model.label] if by_model else [])
    return " · ".join(parts)


def check_claims(loaded: LoadedSuite) -> None:
    """Validate the suite's `claims:` against its own cells (selectors, quantities, bounds)."""
    source = loaded.source
    for i, spec in enumerate(loaded.suite.claims):
        base: KeyPath = ("claims", i)
        raw = source.data["claims"][i]
        for key, text in spec.expect.items():
            try:
                parse_expectation(key, text)
            except KeyError as exc:
                raise source.error((*base, "expect", key), str(exc.args[0]), key=True) from None
            except ValueError as exc:
                raise source.error((*base, "expect", key), str(exc)) from None
        picked: dict[str, list[Cell]] = {}
        if isinstance(spec.baseline, ReferenceBaseline):
            _check_reference_claim(loaded, base, spec, raw)
            continue
        for side in ("subject", "baseline"):
            selector: Selector = getattr(spec, side)
            at: KeyPath = (*base, side)
            rule = _check_subject(loaded, at, selector, raw.get(side) or {})
            cells = [
                c
                for c in loaded.cells
                if matches_rule(
                    rule, {"dataset": c.dataset, "model": c.model, "method": c.method, "seed": 0}
                )
            ]
            if not cells:
                raise source.error(
                    at,
                    f"the {side} ({selector_label(selector)}) matches no cell of the suite: "
                    "the exclude rules remove every cell it names",
                )
            picked[side] = cells
        both = {c.id for c in picked["subject"]} & {c.id for c in picked["baseline"]}
        if both:
            raise source.error(
                (*base, "baseline"),
                f"{len(both)} cells are both subject and baseline; make the selectors differ",
            )
        by_model = pairs_by_model(spec)
        subject = {_cell_group(c, by_model) for c in picked["subject"]}
        baseline: dict[str, set[str]] = {}
        for cell in picked["baseline"]:
            baseline.setdefault(_cell_group(cell, by_model), set()).add(
                f"{cell.model.label} · {cell.method.label}"
            )
        if not subject & set(baseline):
            how = "dataset and model" if by_model else "dataset"
            raise source.error(
                (*base, "baseline"),
                f"no baseline cell shares a {how} with a subject cell (subject: "
                f"{', '.join(sorted(subject))}; baseline: {', '.join(sorted(baseline))})",
            )
        for group, settings in baseline.items():
            if group in subject and len(settings) > 1:
                raise source.error(
                    (*base, "baseline"),
                    f"the baseline matches {len(settings)} settings for {group} "
                    f"({'; '.join(sorted(settings))}): name one (with params) to compare with",
                )


def _check_subject(loaded: LoadedSuite, at: KeyPath, selector: Selector, written: Any) -> dict:
    """A claim side's selector names something, and each pick exists in the suite; its rule."""
    source = loaded.source
    if not any(getattr(selector, a) is not None for a in ("dataset", "model", "method")):
        raise source.error(at, "a selector names a dataset, model or method (or several)")
    for axis in ("dataset", "model", "method"):
        pick = getattr(selector, axis)
        if pick is not None:
            error = _pick_error(loaded, (*at, axis), axis, pick, written.get(axis))
            if error is not None:
                raise error
    return {
        a: getattr(selector, a).model_dump()
        for a in ("dataset", "model", "method")
        if getattr(selector, a) is not None
    }


def _check_reference_claim(
    loaded: LoadedSuite, base: KeyPath, spec: ClaimSpec, raw: dict[str, Any]
) -> None:
    """A claim against a published reference: the reference exists and states each quantity,
    and the subject names cells on its dataset."""
    source = loaded.source
    assert isinstance(spec.baseline, ReferenceBaseline)
    wanted = spec.baseline.reference
    labels = [r.label for r in loaded.suite.references]
    if wanted not in labels:
        close = difflib.get_close_matches(wanted, labels, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listed = ", ".join(f"'{label}'" for label in labels) or "none"
        raise source.error(
            (*base, "baseline", "reference"),
            f"the suite lists no reference '{wanted}'{hint} (references: {listed})",
        )
    reference = loaded.suite.references[labels.index(wanted)]
    for key in spec.expect:
        stated = REFERENCE_QUANTITIES.get(QUANTITIES[key].column)
        if stated is None or getattr(reference, stated) is None:
            what = (
                "states accuracy, params and MACs only"
                if stated is None
                else f"states no {stated} (add it to the reference)"
            )
            raise source.error(
                (*base, "expect", key),
                f"the reference '{wanted}' {what}: it cannot be compared on {key}",
                key=True,
            )
    rule = _check_subject(loaded, (*base, "subject"), spec.subject, raw.get("subject") or {})
    on_dataset = [
        c
        for c in loaded.cells
        if c.dataset.name == reference.dataset
        and matches_rule(
            rule, {"dataset": c.dataset, "model": c.model, "method": c.method, "seed": 0}
        )
    ]
    if not on_dataset:
        raise source.error(
            (*base, "subject"),
            f"the subject ({selector_label(spec.subject)}) matches no cell on the reference's "
            f"dataset '{reference.dataset}'",
        )


def check_references(loaded: LoadedSuite) -> None:
    """Each reference names one of the suite's datasets (its figures are drawn beside them)."""
    names = list(dict.fromkeys(c.name for c in loaded.datasets))
    for i, ref in enumerate(loaded.suite.references):
        if ref.dataset not in names:
            raise loaded.source.error(
                ("references", i, "dataset"),
                f"'{ref.dataset}' is not one of the suite's datasets ({', '.join(names)})",
            )
