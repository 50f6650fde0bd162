"""The claims and references a stored suite text declares (what the results were run with)."""

from __future__ import annotations

from pydantic import ValidationError

from pcnbench.claims.expectations import parse_expectation, pick_label
from pcnbench.contracts import Reference, ReportData
from pcnbench.errors import SuiteError
from pcnbench.schema import ClaimSpec, ReferenceSpec, pydantic_error
from pcnbench.yamlsrc import Source, load_text

__all__ = ["read_claims", "read_references", "stored_suite_text"]


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


def stored_suite_text(data: ReportData) -> str:
    """The suite text stored with the last run of `data` ("" when there is none)."""
    runs = data.runs
    if runs.empty or "suite_text" not in runs.columns:
        return ""
    text = runs["suite_text"].iloc[-1]
    return text if isinstance(text, str) else ""
