"""Whether a folder may receive a suite's results: checked before anything is written there.

A pcnbench output folder is one that does not exist yet, is empty, holds `results.db`, or holds
only what a run leaves before its database exists (the lock file). Any other folder belongs to
someone else and is refused, as is a file, a path under a file, and a folder whose database
holds another suite's runs (unless mixing is asked for).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pcnbench.errors import PcnbenchError

__all__ = [
    "LOCK_NAME",
    "WRITABLE_ADVICE",
    "OutputFolderError",
    "check_output",
    "not_a_folder",
    "suites_in",
]

LOCK_NAME = ".pcnbench.lock"
DB_NAME = "results.db"
# what a run may have written before results.db exists (a run killed that early)
_BEFORE_DB = {LOCK_NAME}
_WHERE = "(--output DIR or the suite's `output:`)"
_ADVICE = f"pick an empty or new folder {_WHERE}"
WRITABLE_ADVICE = f"pick a folder you can write {_WHERE}"


class OutputFolderError(PcnbenchError):
    """The output folder cannot, or must not, receive this suite's results."""


def suites_in(db: Path) -> list[str] | None:
    """The suites of the runs stored in `db`, read-only; None when it cannot be read here."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except (sqlite3.Error, OSError):
        return None
    try:
        rows = con.execute("SELECT DISTINCT suite FROM runs WHERE suite IS NOT NULL").fetchall()
    except sqlite3.Error:
        return None  # not a database, damaged, or no runs table: the store says what is wrong
    finally:
        con.close()
    return sorted(str(r[0]) for r in rows)


def _first_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (as anything)."""
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        probe = probe.parent
    return probe


def not_a_folder(output: Path) -> OutputFolderError:
    """The error for an output that is a file."""
    return OutputFolderError(f"output {output} is a file, not a folder; {_ADVICE}")


def check_output(output: Path, suite: str, *, mix_suites: bool = False) -> None:
    """Raise OutputFolderError unless `output` may receive suite `suite`'s results."""
    try:
        _check(output, suite, mix_suites)
    except PermissionError as exc:
        where = exc.filename or output
        raise OutputFolderError(
            f"output folder {output}: permission denied reading {where}; {_ADVICE}"
        ) from None
    except OSError as exc:  # a name too long, a loop of links, an I/O error: say which
        raise OutputFolderError(
            f"output folder {output} cannot be used ({exc.strerror or exc}); {_ADVICE}"
        ) from None


def _check(output: Path, suite: str, mix_suites: bool) -> None:
    if output.is_file() or (output.exists() and not output.is_dir()):
        raise not_a_folder(output)
    if output.is_symlink() and not output.exists():
        raise OutputFolderError(f"output {output} is a broken link; {_ADVICE}")
    if not output.exists():
        ancestor = _first_existing(output.parent)
        if ancestor.exists() and not ancestor.is_dir():
            raise OutputFolderError(
                f"output folder {output} cannot be created: {ancestor} is a file; {_ADVICE}"
            )
        return
    entries = {p.name for p in output.iterdir()}
    if DB_NAME not in entries:
        if entries - _BEFORE_DB:
            raise OutputFolderError(
                f"output folder {output} is not empty and holds no pcnbench results "
                f"({DB_NAME}); refusing to write into it: {_ADVICE}"
            )
        return
    theirs = suites_in(output / DB_NAME)
    if not theirs or suite in theirs or mix_suites:
        return
    named = ", ".join(f"'{s}'" for s in theirs)
    raise OutputFolderError(
        f"output folder {output} holds results of suite {named}, not of suite '{suite}'; "
        f"{_ADVICE}, or pass --mix-suites to store both suites' results together"
    )
