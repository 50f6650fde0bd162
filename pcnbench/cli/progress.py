"""How a run shows its progress: rich bars on a terminal, a plain line per cell off one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from pcnbench.cli.formatting import format_value
from pcnbench.cli.terminal import rich_console
from pcnbench.hookspecs import hookimpl
from pcnbench.labels import is_missing

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from pcnbench.cells import Cell
    from pcnbench.manager import PluginHost


class NamedBars:
    """A rich Progress whose cell bars show short labels (the driver names cells in full)."""

    def __init__(self, progress: Progress, names: dict[str, str]) -> None:
        self.progress, self.names = progress, names

    def add_task(self, description: str, **kwargs: Any) -> TaskID:
        """A bar named by the cell's short label."""
        return self.progress.add_task(self.names.get(description, description), **kwargs)

    def __getattr__(self, name: str) -> Any:  # update, advance, remove_task: as they are
        return getattr(self.progress, name)


class CellLines:
    """Progress where there is no terminal (a pipe, a CI log): a plain line per cell started
    and finished, e.g. `[3/16] done   pcn keep=f0.0625 seed 0  acc 95.83%  12.3 s`.

    The driver moves it like a rich Progress (`add_task`, `update`, `advance`, `remove_task`);
    the finished lines come from the `on_cell_end` hook, which says the cell's status and
    results (register it with the plugin manager for the run).
    """

    def __init__(self, names: dict[str, str], write: Callable[[str], None] | None = None) -> None:
        self.names = names  # full label → short label
        self.write = write or (lambda line: print(line, flush=True))
        self.total = len(names)
        self.started = self.finished = self.tasks = 0
        self.began: dict[str, float] = {}  # full label → when it started

    def _count(self, n: int) -> str:
        """`[ n/total]`, right-aligned so that the lines' labels line up."""
        return f"[{n:>{len(str(self.total))}}/{self.total}]"

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        """The suite's task (its total counts the cells to run), or a cell starting: a line."""
        self.tasks += 1
        if description not in self.names:
            self.total = int(total or 0) or self.total
            return self.tasks
        self.started += 1
        self.began[description] = time.perf_counter()
        self.write(f"{self._count(self.started)} start  {self.names[description]}")
        return self.tasks

    def update(self, task: int, **_: Any) -> None:
        """Steps within a cell: not printed."""

    def advance(self, task: int, advance: float = 1) -> None:
        """A cell finished: its line comes from `on_cell_end`."""

    def remove_task(self, task: int) -> None:
        """A cell's task ends: nothing to print."""

    @hookimpl
    def on_cell_end(
        self, cell: Cell, status: str, results: list[dict[str, Any]], error: str | None
    ) -> None:
        """A line for the cell that ended: status, accuracy and wall time, or why it failed."""
        label = getattr(cell, "label", None)
        if label not in self.names:
            return
        self.finished += 1
        began = self.began.pop(label, None)
        said = f"{self._count(self.finished)} {status:<6} {self.names[label]}"
        accuracies = [r.get("accuracy") for r in results if not is_missing(r.get("accuracy"))]
        if accuracies:
            said += f"  acc {format_value(accuracies[-1], 'accuracy')}"
            if len(results) > 1:
                said += f" (last of {len(results)} results)"
        if began is not None:
            said += f"  {time.perf_counter() - began:.1f} s"
        if error and status != "done":
            from pcnbench.labels import error_reason

            said += f"  {error_reason(error, status)}"
        self.write(said)


def run_progress(
    quiet: bool, cells: list[Cell], host: PluginHost, out: Console
) -> AbstractContextManager[NamedBars | CellLines | None]:
    """How the run shows its progress: rich bars on a terminal, plain lines off one, or none."""
    from pcnbench.labels import cell_parts, short_labels

    short = short_labels([cell_parts(c) for c in cells])
    names = {c.label: short[c.id] for c in cells}

    @contextmanager
    def bars() -> Iterator[NamedBars]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column as RichColumn

        with Progress(
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=RichColumn(no_wrap=True, overflow="ellipsis", max_width=36),
            ),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            yield NamedBars(progress, names)

    @contextmanager
    def lines() -> Iterator[CellLines]:
        reporter = CellLines(names)
        name = "pcnbench-cli-lines"
        host.pm.register(reporter, name=name)
        try:
            yield reporter
        finally:
            host.pm.unregister(name=name)

    @contextmanager
    def nothing() -> Iterator[None]:
        yield None

    err = rich_console(stderr=True)
    if quiet:
        return nothing()
    return bars() if out.is_terminal and err.is_terminal else lines()
