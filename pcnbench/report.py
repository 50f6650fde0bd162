"""Reports: load a results database into frames and hand them to every registered reporter."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pandas as pd

from pcnbench.claims import judge_claims, read_references
from pcnbench.contracts import Method, ReportData
from pcnbench.errors import DiskFullError, PcnbenchError
from pcnbench.labels import json_object
from pcnbench.store import Store

# Columns holding JSON objects that reporters receive as dicts: each axis's full parameters,
# and the parameters as the suite wrote them (falling back to the full ones where not stored).
_PARAMS = ("dataset_params", "model_params", "method_params")
_SETTINGS = {f"{axis}_setting": f"{axis}_params" for axis in ("dataset", "model", "method")}


def _parse_params(frame: pd.DataFrame) -> pd.DataFrame:
    """Parse the params and setting columns of `frame` into dicts (settings default to params)."""
    if frame.empty:
        return frame
    out = frame.copy()
    for name in _PARAMS:
        if name in out.columns:
            out[name] = [json_object(v) or {} for v in out[name]]
    for name, full in _SETTINGS.items():
        written = out[name] if name in out.columns else [None] * len(out)
        fallback = out[full] if full in out.columns else [{}] * len(out)
        out[name] = [
            parsed if (parsed := json_object(v)) is not None else dict(f)
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
    `claims` and `references` come from the suite text stored with the last run.
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
    data = ReportData(output_dir=out, suite=suite, results=results, methods=methods, **frames)
    text = runs["suite_text"].iloc[-1] if len(runs) and "suite_text" in runs.columns else None
    if isinstance(text, str) and text:
        data.references = read_references(text)
        data.claims = judge_claims(data)
    return data


class ReportError(PcnbenchError):
    """One or more reporters failed; the others still wrote their files."""


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def _os_error(exc: BaseException, codes: tuple[int, ...]) -> OSError | None:
    """The OSError with one of the errno `codes` in `exc`'s chain of causes, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in codes:
            return current
        current = current.__cause__ or current.__context__
    return None


def build_report(
    output_dir: str | Path,
    host: Any,
    out_dir: str | Path | None = None,
    figure_formats: tuple[str, ...] = ("svg",),
) -> list[Path]:
    """Run every registered reporter, in order, on the results in `output_dir`.

    The files go to `out_dir` (default: the results' own folder; the database is only read,
    so it may lie on read-only media). Returns the files written; the HTML page is
    `<out_dir>/index.html`. A reporter that raises does not stop the ones after it; a
    ReportError naming each failure follows, or a DiskFullError when disk space ran out.
    """
    data = load_report_data(output_dir, host)
    data.figure_formats = figure_formats
    target = Path(out_dir) if out_dir is not None else data.output_dir
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PcnbenchError(
            f"{target}: cannot create the report folder ({exc.strerror or exc}); "
            "pass a writable folder with --output"
        ) from None
    written: list[Path] = []
    failures: list[str] = []
    full: OSError | None = None
    denied: OSError | None = None
    reporters = sorted(
        ((name, host.reporters.get(name)) for name in host.reporters.names()),
        key=lambda pair: (pair[1].order, pair[0]),
    )
    for name, reporter in reporters:
        try:
            written.extend(reporter.render(data, target))
        except Exception as exc:
            full = full or _os_error(exc, _NO_SPACE)
            denied = denied or _os_error(exc, _READ_ONLY)
            failures.append(f"reporter '{name}': {type(exc).__name__}: {exc}")
            cause = exc
    if full is not None:
        where = full.filename or target
        raise DiskFullError(
            f"no space left on device while writing {where}; the report in {target} is "
            "incomplete (files not rewritten are from an earlier report; the results in the "
            "database are untouched). Free some space and run `pcnbench report` again"
        )
    if denied is not None:
        raise PcnbenchError(
            f"{denied.filename or target}: cannot write the report here "
            f"({denied.strerror or denied}); pass a writable folder with --output DIR"
        )
    if failures:
        raise ReportError("; ".join(failures)) from cause
    return written
