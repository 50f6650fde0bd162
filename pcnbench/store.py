"""The results database: SQLite at <output>/results.db, written only by the driver process."""

from __future__ import annotations

import errno
import functools
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pandas as pd

from pcnbench.errors import DiskFullError, StoreError

SCHEMA_VERSION = 1

# Stable, documented result columns, in display order; later columns are added on demand.
RESULT_COLUMNS = [
    "suite",
    "cell_id",
    "dataset",
    "model",
    "method",
    "method_params",
    "seed",
    "status",
    "params",
    "dense_params",
    "macs",
    "dense_macs",
    "accuracy",
    "train_time_s",
    "epochs_trained",
    "error",
]
# Then these, in this order; every other result column follows in alphabetical order.
CELL_COLUMNS = [
    "label",
    "dataset_params",
    "model_params",
    "device",
    "dataset_setting",
    "model_setting",
    "method_setting",
    "result",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite TEXT, suite_file TEXT, suite_sha256 TEXT, suite_text TEXT,
    argv TEXT, started_at TEXT, finished_at TEXT, status TEXT, environment TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    suite TEXT, label TEXT,
    dataset TEXT, dataset_params TEXT, model TEXT, model_params TEXT,
    method TEXT, method_params TEXT, seed INTEGER, config TEXT,
    dataset_setting TEXT, model_setting TEXT, method_setting TEXT,
    status TEXT, error TEXT, run_id INTEGER, device TEXT,
    started_at TEXT, finished_at TEXT, wall_time_s REAL
);
CREATE TABLE IF NOT EXISTS results (
    cell_id TEXT, idx INTEGER,
    params INTEGER, dense_params INTEGER, macs INTEGER, dense_macs INTEGER,
    accuracy REAL, train_time_s REAL, epochs_trained REAL,
    PRIMARY KEY (cell_id, idx)
);
CREATE TABLE IF NOT EXISTS epochs (
    cell_id TEXT, idx INTEGER, phase TEXT, epoch INTEGER, step INTEGER,
    train_loss REAL, test_accuracy REAL, test_loss REAL, val_accuracy REAL,
    lr REAL, seconds REAL,
    PRIMARY KEY (cell_id, idx)
);
CREATE TABLE IF NOT EXISTS phases (
    cell_id TEXT, idx INTEGER, name TEXT, kind TEXT, wall_s REAL, cpu_s REAL,
    start_step INTEGER, end_step INTEGER,
    PRIMARY KEY (cell_id, idx)
);
"""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Each axis's parameters as the suite wrote them for the grid point (JSON; `Choice.raw`): what
# tells the point apart from the others of its plugin. Added to databases written before them.
SETTING_COLUMNS = ("dataset_setting", "model_setting", "method_setting")

# The cells columns `results_frame` selects (`result` is the result's index in its cell).
_CELL_SELECT = (
    *("suite", "cell_id", "dataset", "model", "method", "method_params", "seed", "status"),
    *("error", "label", "dataset_params", "model_params", "device", *SETTING_COLUMNS),
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """A value SQLite can store: numbers and text as they are, the rest as JSON."""
    if value is None or isinstance(value, (str, int, bytes)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return json.dumps(value, sort_keys=True, default=str)


def _setting(cell: Any, axis: str) -> str | None:
    """The params the suite wrote for one axis of `cell`, as JSON in the order written.

    None when the cell does not say (a stand-in without `Choice`s).
    """
    raw = getattr(getattr(cell, axis, None), "raw", None)
    return json.dumps(raw, default=str) if isinstance(raw, dict) else None


_T = TypeVar("_T")
# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF)
_SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 11, 13, 14
_SQLITE_NOTADB = 26
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def recover_advice(path: Path) -> str:
    """How to salvage what a damaged database `path` still holds, with SQLite's `.recover`."""
    salvaged = path.with_name("recovered.db")
    return (
        f"To salvage what it holds: sqlite3 {path} .recover | sqlite3 {salvaged}, then use "
        f"{salvaged} in its place; or move {path.name} aside and run again to start a new one"
    )


def store_error(path: Path, exc: BaseException, *, writing: bool = True) -> Exception:
    """The PcnbenchError that tells the user what `exc`, met on the database `path`, means."""
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    text = str(exc)
    if (
        (isinstance(exc, OSError) and exc.errno in _NO_SPACE)
        or code == _SQLITE_FULL
        or "disk is full" in text
    ):
        return DiskFullError(
            f"no space left on device while writing {path}; every result committed before "
            "is kept in it. Free some space and run the same command again to continue"
        )
    if (
        code == _SQLITE_READONLY
        or "readonly" in text
        or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM))
    ):
        return StoreError(
            f"{path}: cannot write here ({text}): the folder or medium is read-only. "
            "Give `run` a writable --output (or copy the folder somewhere writable); "
            "`pcnbench results` and `pcnbench report --output DIR` read it where it is"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (
        isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text)
    ):
        return StoreError(
            f"{path}: damaged, or not a results database ({text}); pcnbench left it unchanged. "
            + recover_advice(path)
        )
    if code == _SQLITE_CANTOPEN:
        return StoreError(f"{path}: cannot open the results database ({text})")
    what = "writing" if writing else "reading"
    return StoreError(f"{path}: error {what} the results database: {text}")


def _guarded(method: Callable[..., _T]) -> Callable[..., _T]:
    """Turn the SQLite (and OS) errors of a Store method into a StoreError naming the file."""

    @functools.wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> _T:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise store_error(self.path, exc, writing=not self.readonly) from None

    return call


def _row(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "as_row"):
        return obj.as_row()
    return asdict(obj) if is_dataclass(obj) else dict(obj)


class Store:
    """Cells, their results, per-epoch records and phases, and the runs that produced them."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """Open `path` for writing (created and migrated as needed), or `readonly` for reading.

        Read-only opening creates, migrates and locks nothing: it works on read-only media and
        refuses a file that is not a pcnbench results database, leaving it unchanged.
        """
        self.path = Path(path)
        self.readonly = readonly
        self.db = None  # type: ignore[assignment]
        try:
            self._open()
        except BaseException:
            if self.db is not None:
                self.db.close()
            raise

    @_guarded
    def _open(self) -> None:
        if self.readonly:
            if not self.path.is_file():
                raise StoreError(
                    f"no results database at {self.path} (run a suite first, or pass its "
                    "output directory)"
                )
            if self.path.stat().st_size == 0:
                raise StoreError(
                    f"{self.path}: empty file, not a results database; pcnbench left it "
                    "unchanged (pass a suite's output directory or its results.db)"
                )
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, timeout=30)
            self.db.row_factory = sqlite3.Row
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
            if "cells" not in tables:
                raise StoreError(
                    f"{self.path}: not a pcnbench results database (no cells table); "
                    "pcnbench left it unchanged"
                )
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.row_factory = sqlite3.Row
        # a file that is not a database is refused here, before anything is written to it
        self.db.execute("SELECT name FROM sqlite_master").fetchall()
        with self.db:
            self.db.executescript(_SCHEMA)
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._ensure_columns("cells", SETTING_COLUMNS)

    @classmethod
    def open_existing(cls, location: str | Path) -> Store:
        """Open a results database, by its directory or file path, read-only.

        StoreError when it is absent, damaged or not a results database.
        """
        path = Path(location)
        if path.is_dir():
            path = path / "results.db"
        return cls(path, readonly=True)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def _tables(self) -> set[str]:
        """The names of the tables this database holds."""
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _columns(self, table: str) -> list[str]:
        """The table's columns in the order they were added (a list: set order varies by run)."""
        return [r["name"] for r in self.db.execute(f"PRAGMA table_info({table})")]

    def _ensure_columns(self, table: str, keys: Iterable[str]) -> None:
        present = set(self._columns(table))
        missing = [k for k in keys if k not in present]
        for key in missing:
            if not _IDENT.match(key):
                raise ValueError(f"result key {key!r} is not a valid column name")
            self.db.execute(f'ALTER TABLE {table} ADD COLUMN "{key}"')

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        self._ensure_columns(table, row)
        cols = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(
            f"INSERT INTO {table} ({cols}) VALUES ({marks})", [_plain(v) for v in row.values()]
        )

    @_guarded
    def begin_run(
        self, suite: str, suite_file: str, sha256: str, text: str, argv: list[str], env: dict
    ) -> int:
        """Record the start of a `pcnbench run` and return its id.

        Runs hold the output directory's lock, so an earlier run still marked running ended
        without closing (killed): it and its running cells are marked so.
        """
        with self.db:
            self.db.execute("UPDATE runs SET status = 'killed' WHERE status = 'running'")
            self.db.execute(
                "UPDATE cells SET status = 'interrupted', error = 'the run was killed while"
                " this cell ran; the next run resumes it from its last checkpoint'"
                " WHERE status = 'running'"
            )
            cur = self.db.execute(
                "INSERT INTO runs (suite, suite_file, suite_sha256, suite_text, argv, started_at,"
                " status, environment) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                (suite, suite_file, sha256, text, json.dumps(argv), _now(), json.dumps(env)),
            )
        return int(cur.lastrowid)

    @_guarded
    def end_run(self, run_id: int, status: str) -> None:
        """Mark a run finished with `status` (done, failed, interrupted)."""
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
                (_now(), status, run_id),
            )

    @_guarded
    def statuses(self) -> dict[str, str]:
        """cell_id → status for every stored cell."""
        return {
            r["cell_id"]: r["status"] for r in self.db.execute("SELECT cell_id, status FROM cells")
        }

    @_guarded
    def start_cell(self, cell: Any, run_id: int, device: str) -> None:
        """Mark a cell running (a crash leaves it so, and the next run retries it).

        Stores its full parameters and, in the `*_setting` columns, the parameters as the suite
        wrote them for its grid point (`cell.method.raw` and likewise), as JSON.
        """
        config = cell.config
        row = {
            "cell_id": cell.id,
            "suite": cell.suite,
            "label": cell.label,
            "dataset": config["dataset"]["name"],
            "dataset_params": config["dataset"]["params"],
            "model": config["model"]["name"],
            "model_params": config["model"]["params"],
            "method": config["method"]["name"],
            "method_params": config["method"]["params"],
            "seed": cell.seed,
            "config": config,
            **{f"{axis}_setting": _setting(cell, axis) for axis in ("dataset", "model", "method")},
            "status": "running",
            "error": None,
            "run_id": run_id,
            "device": device,
            "started_at": _now(),
            "finished_at": None,
            "wall_time_s": None,
        }
        with self.db:
            self.db.execute("DELETE FROM cells WHERE cell_id = ?", (cell.id,))
            self._insert("cells", row)

    @_guarded
    def finish_cell(
        self,
        cell_id: str,
        status: str,
        *,
        results: list[dict] = (),
        epochs: list[Any] = (),
        phases: list[Any] = (),
        error: str | None = None,
        wall_time_s: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Store a cell's outcome and everything it produced, replacing any earlier attempt."""
        with self.db:
            for table in ("results", "epochs", "phases"):
                self.db.execute(f"DELETE FROM {table} WHERE cell_id = ?", (cell_id,))
            for idx, result in enumerate(results):
                self._insert("results", {"cell_id": cell_id, "idx": idx, **result})
            for idx, record in enumerate(epochs):
                self._insert("epochs", {"cell_id": cell_id, "idx": idx, **_row(record)})
            for idx, phase in enumerate(phases):
                self._insert("phases", {"cell_id": cell_id, "idx": idx, **_row(phase)})
            values = {
                "status": status,
                "error": error,
                "finished_at": _now(),
                "wall_time_s": wall_time_s,
                **(extra or {}),
            }
            self._ensure_columns("cells", values)
            assignments = ", ".join(f'"{k}" = ?' for k in values)
            self.db.execute(
                f"UPDATE cells SET {assignments} WHERE cell_id = ?",
                [*(_plain(v) for v in values.values()), cell_id],
            )

    @_guarded
    def results_frame(self) -> pd.DataFrame:
        """One row per result (a failed or unfinished cell is one row with its status and error).

        Columns in a fixed order: `RESULT_COLUMNS`, then `CELL_COLUMNS`, then every other result
        column in alphabetical order, so the same columns give the same header whatever order
        they reached the database in. Columns holding only integers (and missing values) are
        pandas' nullable `Int64`: a failed cell's missing value does not turn 474 into 474.0.
        """
        present = set(self._columns("cells"))  # an older database may lack newer columns
        cells = ", ".join(f"c.{c}" if c in present else f"NULL AS {c}" for c in _CELL_SELECT)
        if "results" in self._tables():
            stored = [c for c in self._columns("results") if c not in {"cell_id", "idx"}]
            picked = "".join(f', r."{c}"' for c in stored)
            query = (
                f"SELECT {cells}, r.idx AS result{picked}"
                " FROM cells c LEFT JOIN results r ON r.cell_id = c.cell_id"
                " ORDER BY c.rowid, r.idx"
            )
        else:
            query = f"SELECT {cells}, NULL AS result FROM cells c ORDER BY c.rowid"
        cursor = self.db.execute(query)
        names = [d[0] for d in cursor.description]
        rows = [tuple(r) for r in cursor.fetchall()]
        frame = pd.DataFrame.from_records(rows, columns=names, coerce_float=True)
        for j in range(len(names)):
            values = [r[j] for r in rows]
            if any(v is not None for v in values) and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values
            ):
                frame.isetitem(j, pd.array(values, dtype="Int64"))
        first = [c for c in (*RESULT_COLUMNS, *CELL_COLUMNS) if c in frame.columns]
        rest = sorted(c for c in frame.columns if c not in first)
        return frame[first + rest]

    @_guarded
    def table(self, name: str) -> pd.DataFrame:
        """A whole table (epochs, phases, runs, cells) as a DataFrame."""
        if name not in {"epochs", "phases", "runs", "cells", "results"}:
            raise ValueError(f"no table {name!r}")
        if name not in self._tables():  # an older database that never had it
            return pd.DataFrame()
        return pd.read_sql_query(f"SELECT * FROM {name}", self.db)
