"""Reports: load a results database into frames and hand them to every registered reporter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pcnbench.contracts import Method, ReportData
from pcnbench.errors import PcnbenchError
from pcnbench.store import Store

# Columns holding JSON objects that reporters receive as dicts: each axis's full parameters,
# and the parameters as the suite wrote them (falling back to the full ones where not stored).
_PARAMS = ("dataset_params", "model_params", "method_params")
_SETTINGS = {f"{axis}_setting": f"{axis}_params" for axis in ("dataset", "model", "method")}


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A JSON object column's value as a dict (None when absent or not an object)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _parse_params(frame: pd.DataFrame) -> pd.DataFrame:
    """Parse the params and setting columns of `frame` into dicts (settings default to params)."""
    if frame.empty:
        return frame
    out = frame.copy()
    for name in _PARAMS:
        if name in out.columns:
            out[name] = [_as_dict(v) or {} for v in out[name]]
    for name, full in _SETTINGS.items():
        written = out[name] if name in out.columns else [None] * len(out)
        fallback = out[full] if full in out.columns else [{}] * len(out)
        out[name] = [
            parsed if (parsed := _as_dict(v)) is not None else dict(f)
            for v, f in zip(written, fallback, strict=True)
        ]
    return out


def _installed_methods(results: pd.DataFrame, host: Any) -> dict[str, Method]:
    """name → installed Method for each method in `results` (uninstalled ones left out)."""
    registry = getattr(host, "methods", None)
    if registry is None or results.empty or "method" not in results.columns:
        return {}
    names = [str(n) for n in dict.fromkeys(results["method"].dropna())]
    return {name: registry.get(name) for name in names if name in registry}


def load_report_data(output_dir: str | Path, host: Any = None) -> ReportData:
    """Read a suite's output directory (or its results.db) into a ReportData.

    With the plugin `host`, `methods` holds the installed method of each method in the results.
    """
    store = Store.open_existing(output_dir)
    try:
        results = store.results_frame()
        frames = {name: store.table(name) for name in ("epochs", "phases", "runs", "cells")}
    finally:
        store.close()
    results = _parse_params(results)
    frames["cells"] = _parse_params(frames["cells"])
    path = Path(output_dir)
    out = path if path.is_dir() else path.parent
    runs = frames["runs"]
    suite = str(runs["suite"].iloc[-1]) if len(runs) else out.name
    methods = _installed_methods(results, host)
    return ReportData(output_dir=out, suite=suite, results=results, methods=methods, **frames)


class ReportError(PcnbenchError):
    """One or more reporters failed; the others still wrote their files."""


def build_report(output_dir: str | Path, host: Any) -> list[Path]:
    """Run every registered reporter, in order, on the results in `output_dir`.

    Returns the files written; the HTML page is `<output_dir>/index.html`. A reporter that
    raises does not stop the ones after it; a ReportError naming each failure follows.
    """
    data = load_report_data(output_dir, host)
    written: list[Path] = []
    failures: list[str] = []
    reporters = sorted(
        ((name, host.reporters.get(name)) for name in host.reporters.names()),
        key=lambda pair: (pair[1].order, pair[0]),
    )
    for name, reporter in reporters:
        try:
            written.extend(reporter.render(data, data.output_dir))
        except Exception as exc:
            failures.append(f"reporter '{name}': {type(exc).__name__}: {exc}")
            cause = exc
    if failures:
        raise ReportError("; ".join(failures)) from cause
    return written
