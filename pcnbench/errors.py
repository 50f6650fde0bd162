"""Exceptions the core raises and plugins may raise; each carries where the problem is."""

from __future__ import annotations


class PcnbenchError(Exception):
    """Base class for every error pcnbench reports to the user without a traceback."""


class ParamError(PcnbenchError, ValueError):
    """A plugin rejects a parameter value; `key` names the parameter (None: the whole entry).

    It is a ValueError so that pydantic validators may raise it and keep the key.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class SuiteError(PcnbenchError):
    """An invalid suite: `file:line:col: key.path: message`."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.path = path

    def __str__(self) -> str:
        where = self.file or "<suite>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class PluginError(PcnbenchError):
    """A plugin failed to load or registered a name another plugin already owns."""


class DatasetMissingError(PcnbenchError):
    """A dataset is not on disk and downloading was not asked for."""


class DivergedError(PcnbenchError):
    """Training produced a non-finite loss: the cell stops and is stored as failed."""


class StoreError(PcnbenchError):
    """A results database that cannot be opened, read or written (damaged, read-only, absent)."""


class HaltError(PcnbenchError):
    """The machine cannot go on (no space left, a device gone): the whole run stops.

    Raised while a cell runs, it is not the cell's fault: the cell is stored as interrupted
    (the next run retries it), no further cell starts, and the command exits with code 2.
    """


class DiskFullError(HaltError):
    """No space left on device while writing a file; what was committed before it is kept."""
