"""Reports: load a results database into frames and hand them to every registered reporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pcnbench.contracts import ReportData
from pcnbench.errors import PcnbenchError
from pcnbench.store import Store


def load_report_data(output_dir: str | Path) -> ReportData:
    """Read a suite's output directory (or its results.db) into a ReportData."""
    store = Store.open_existing(output_dir)
    try:
        results = store.results_frame()
        frames = {name: store.table(name) for name in ("epochs", "phases", "runs", "cells")}
    finally:
        store.close()
    path = Path(output_dir)
    out = path if path.is_dir() else path.parent
    runs = frames["runs"]
    suite = str(runs["suite"].iloc[-1]) if len(runs) else out.name
    return ReportData(output_dir=out, suite=suite, results=results, **frames)


class ReportError(PcnbenchError):
    """One or more reporters failed; the others still wrote their files."""


def build_report(output_dir: str | Path, host: Any) -> list[Path]:
    """Run every registered reporter, in order, on the results in `output_dir`.

    Returns the files written; the HTML page is `<output_dir>/index.html`. A reporter that
    raises does not stop the ones after it; a ReportError naming each failure follows.
    """
    data = load_report_data(output_dir)
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
