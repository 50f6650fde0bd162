"""Results from Python: `pcnbench.load(path)` opens a results folder, read-only, as `Results`.

`Results.frame` is one row per result with proper dtypes; `comparison()`, `claims()` and
`figure(name)` give the numbers and pictures the report shows, computed the same way.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pcnbench.labels import is_missing

if TYPE_CHECKING:
    from pcnbench.contracts import ClaimResult, ReportData, ReportFigure
    from pcnbench.manager import PluginHost
    from pcnbench.store import Store

__all__ = ["Results", "json_columns", "load", "results_with_times", "typed_frame"]

# Counts, ids and indices: nullable integers (a failed cell's row has none).
INTEGER_COLUMNS = ("params", "dense_params", "macs", "dense_macs", "seed", "level", "result")
CATEGORY_COLUMNS = ("suite", "dataset", "model", "method", "status", "device")
TIME_COLUMNS = ("started_at", "finished_at")


def _json_value(value: Any) -> Any:
    """A JSON object or array stored as text, parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def json_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of text whose every value is a JSON object or array (params, spectra, …)."""
    found = []
    for name in frame.columns:
        if not _texts(frame[name]):
            continue
        values = [v for v in frame[name] if not is_missing(v)]
        if values and all(isinstance(v, str) and v[:1] in "{[" for v in values):
            found.append(name)
    return found


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`Store.results_frame` with pandas dtypes a notebook can use as they are.

    Counts (`params`, `macs`, …), `seed`, `level` and `result` are nullable `Int64`;
    `dataset`, `model`, `method`, `status` and `device` categoricals; JSON columns (params,
    layer lists, spectra) Python dicts and lists; timestamps datetimes (UTC); every other
    column holding numbers only, float64.
    """
    out = frame.copy()
    for name in json_columns(out):
        out[name] = [_json_value(v) for v in out[name]]
    for name in out.columns:
        column = out[name]
        if name in INTEGER_COLUMNS:
            out[name] = pd.array([None if is_missing(v) else int(v) for v in column], dtype="Int64")
        elif name in CATEGORY_COLUMNS:
            out[name] = column.astype("category")
        elif name in TIME_COLUMNS:
            out[name] = pd.to_datetime(column, utc=True, errors="coerce")
        elif _texts(column) and _numbers_only(column):
            out[name] = pd.to_numeric(column, errors="coerce").astype("float64")
    return out


def results_with_times(store: Store) -> pd.DataFrame:
    """`store.results_frame()` with each cell's `started_at` and `finished_at`."""
    raw = store.results_frame()
    cells = store.table("cells")
    if set(TIME_COLUMNS) <= set(cells.columns) and not raw.empty:
        raw = raw.merge(cells[["cell_id", *TIME_COLUMNS]], on="cell_id", how="left")
    return raw


def _texts(column: pd.Series) -> bool:
    """Whether a column holds Python objects or strings (pandas 3 gives strings their dtype)."""
    return pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)


def _numbers_only(column: pd.Series) -> bool:
    values = [v for v in column if not is_missing(v)]
    return bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )


class Results:
    """A results folder (or its results.db), read once and never written to.

    The database is opened read-only and closed again before `load` returns; the missing or
    damaged database errors are the command line's (`pcnbench.PcnbenchError`).
    """

    def __init__(self, path: str | Path, host: PluginHost | None = None) -> None:
        from pcnbench.report import load_report_data
        from pcnbench.store import Store

        given = Path(path)
        self.path = given if given.is_dir() else given.parent
        self._host = host
        store = Store.open_existing(given)  # read-only: creates and changes nothing
        try:
            self.frame: pd.DataFrame = typed_frame(results_with_times(store))
        finally:
            store.close()
        self.data: ReportData = load_report_data(given, self.host)

    @property
    def host(self) -> PluginHost:
        """The plugins that compute the tables and draw the figures (the installed ones)."""
        if self._host is None:
            from pcnbench.manager import load_plugins

            self._host = load_plugins(strict=False)
        return self._host

    @property
    def suite(self) -> str:
        """The suite's name."""
        return self.data.suite

    def _reporters(self) -> list[Any]:
        registry = self.host.reporters
        return sorted((registry.get(n) for n in registry.names()), key=lambda r: r.order)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table the reporters compute, by name ("comparison", "references", …)."""
        found: dict[str, pd.DataFrame] = {}
        for reporter in self._reporters():
            found.update(reporter.tables(self.data))
        return found

    def comparison(self) -> pd.DataFrame:
        """The comparison table: one row per operating point (means, 95% intervals, paired
        deltas against dense, compression, speedup), the numbers the report prints."""
        tables = self.tables()
        if "comparison" not in tables:
            from pcnbench.errors import PcnbenchError

            raise PcnbenchError("no installed reporter computes the comparison table")
        return tables["comparison"]

    def claims(self) -> list[ClaimResult]:
        """The suite's claims with their verdicts and the numbers behind them."""
        return list(self.data.claims)

    def figures(self) -> list[ReportFigure]:
        """Every report figure, drawn and not saved (close them with matplotlib when done)."""
        drawn: list[ReportFigure] = []
        for reporter in self._reporters():
            drawn.extend(reporter.figures(self.data))
        return drawn

    def figure_names(self) -> list[str]:
        """The names `figure` takes (the report's file names without their extension)."""
        import matplotlib.pyplot as plt

        drawn = self.figures()
        for item in drawn:
            if item.figure is not None:
                plt.close(item.figure)
        return [item.name for item in drawn]

    def figure(self, name: str) -> Any:
        """The report figure `name` as a matplotlib Figure (e.g. "pareto-digits-mlp-params")."""
        import difflib

        import matplotlib.pyplot as plt

        from pcnbench.errors import PcnbenchError

        chosen = None
        drawn = self.figures()
        for item in drawn:
            if item.name == name and item.figure is not None and chosen is None:
                chosen = item.figure
            elif item.figure is not None:
                plt.close(item.figure)
        if chosen is None:
            names = [item.name for item in drawn if item.figure is not None]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PcnbenchError(
                f"no figure '{name}' in {self.path}{hint} (figures: {', '.join(names) or 'none'})"
            )
        return chosen

    def status_counts(self) -> dict[str, int]:
        """Cells by status (`done`, `failed`, …)."""
        cells = self.frame.drop_duplicates("cell_id")
        return {str(k): int(v) for k, v in cells["status"].value_counts(sort=False).items() if v}

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.status_counts().items()) or "no cells"
        return f"<Results {self.suite!r} in {self.path}: {counts}; {len(self.frame)} rows>"

    def _repr_html_(self) -> str:
        """Jupyter's view: the suite, the cells by status and the claims' verdicts."""
        counts = self.status_counts()
        rows = "".join(
            f"<tr><td>{html.escape(s)}</td><td style='text-align:right'>{n}</td></tr>"
            for s, n in counts.items()
        )
        verdicts: dict[str, int] = {}
        for claim in self.data.claims:
            verdicts[claim.verdict] = verdicts.get(claim.verdict, 0) + 1
        claims = ", ".join(f"{n} {v}" for v, n in verdicts.items()) or "none declared"
        return (
            f"<div><b>pcnbench results</b> of suite <code>{html.escape(self.suite)}</code> in "
            f"<code>{html.escape(str(self.path))}</code><table><tr><th>cells</th><th></th></tr>"
            f"{rows}</table><p>{len(self.frame)} result rows; claims: {html.escape(claims)}"
            "</p></div>"
        )


def load(path: str | Path, host: PluginHost | None = None) -> Results:
    """Open a results folder (or its results.db) read-only; see `Results`."""
    return Results(path, host)
