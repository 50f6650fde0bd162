"""A run of a suite as `pcnbench run` and `pcnbench.run` both make it: load and validate the
suite (the executor warming up meanwhile), run the cells that still need to, build the report.

The command line adds its terminal output around these steps; `pcnbench.run` prints nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcnbench.errors import PcnbenchError, SuiteError

if TYPE_CHECKING:
    from pcnbench.cells import Cell
    from pcnbench.manager import PluginHost
    from pcnbench.results import Results
    from pcnbench.runner import Runner, RunSummary
    from pcnbench.suite import LoadedSuite

__all__ = ["RunResult", "build_report", "prepare", "run", "run_cells", "selected_cells"]

Warn = Callable[[str], None]


def prepare(
    suite: str | Path,
    host: PluginHost,
    *,
    output: str | Path | None = None,
    device: str | None = None,
    jobs: int | str | None = None,
    executor: str | None = None,
    address: str | None = None,
    threads: int | None = None,
    meter: bool = True,
    share: bool = True,
    argv: Sequence[str] | None = None,
    warn: Warn | None = None,
    warm: bool = True,
) -> tuple[LoadedSuite, Runner]:
    """Load and validate `suite` and set up its runner; SuiteError names file:line:col.

    With `warm`, the executor starts what it needs (the local one, its worker server) while
    the suite's grid is validated; a failing warm-up only warns.
    """
    from pcnbench.suite import load_suite

    say = warn or (lambda message: None)

    def warm_up(parsed: Any) -> None:
        name = executor or parsed.executor.name
        if name not in host.executors:
            return  # validation names it
        workers = jobs if jobs is not None else parsed.executor.jobs
        try:
            host.executors.get(name).warm(workers, device or parsed.device)
        except Exception as exc:  # an optional head start: the run goes on without it
            say(
                f"warning: executor '{name}' (plugin '{host.executors.plugin_of(name)}'):"
                f" warm() failed ({type(exc).__name__}: {exc}); the run goes on without its"
                " early start"
            )

    loaded = load_suite(suite, host, parsed=warm_up if warm else None)
    # imported once the executor is warming up: the runner brings in torch and pandas
    from pcnbench.runner import Runner

    runner = Runner(
        loaded,
        host,
        output=output,
        device=device,
        argv=list(argv) if argv is not None else None,
        metering=None if meter else False,
        share=share,
        jobs=jobs,
        executor=executor,
        address=address,
        threads=threads,
        warn=say,
    )
    return loaded, runner


def selected_cells(loaded: LoadedSuite, only: str | None) -> list[Cell]:
    """The cells `only` selects (all when None); SuiteError when it matches none."""
    from pcnbench.cells import select

    cells = select(loaded.cells, only)
    if not cells:
        raise SuiteError(f"--only {only!r} matches no cell", file=loaded.file)
    return cells


def run_cells(
    loaded: LoadedSuite,
    runner: Runner,
    *,
    only: str | None = None,
    force: bool = False,
    mix_suites: bool = False,
) -> RunSummary:
    """Run the cells `only` selects (all by default) that are not done yet (all with `force`)."""
    selected_cells(loaded, only)
    return runner.run(only=only, force=force, mix_suites=mix_suites)


def build_report(
    output: Path,
    host: PluginHost,
    target: Path | None = None,
    formats: tuple[str, ...] = ("svg",),
) -> str | None:
    """Build the report of the results in `output` (into `target`); the error, if incomplete.

    The results stay stored whatever happens to the report.
    """
    from pcnbench.report import ReportError
    from pcnbench.report import build_report as build

    try:
        build(output, host, target, figure_formats=formats)
    except ReportError as exc:
        return f"report incomplete: {exc}"
    except PcnbenchError as exc:  # a full disk, a read-only folder, a damaged database
        return str(exc)
    return None


@dataclass
class RunResult:
    """What `pcnbench.run` did: the cells it trained, skipped and lost, and the report.

    A run with failed cells returns normally and says so here (`failed`, `ok`); only bad
    input (a suite that does not validate, an unusable output folder) raises.
    """

    suite: str
    output: Path
    selected: list[str] = field(default_factory=list)  # ids of the cells asked for
    done: list[str] = field(default_factory=list)  # trained by this run
    failed: list[str] = field(default_factory=list)
    skipped: int = 0  # already done before this run
    interrupted: bool = False
    report: Path | None = None  # index.html, when built
    report_error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every selected cell is done and the report (when asked for) is complete."""
        return not self.failed and not self.interrupted and self.report_error is None

    def load(self) -> Results:
        """The results folder, opened read-only (see `pcnbench.load`)."""
        from pcnbench.results import load

        return load(self.output)

    def __repr__(self) -> str:
        state = "ok" if self.ok else "interrupted" if self.interrupted else "incomplete"
        return (
            f"<RunResult {self.suite!r}: {len(self.done)} trained, {self.skipped} already done, "
            f"{len(self.failed)} failed ({state}) → {self.output}>"
        )


def run(
    suite: str | Path,
    *,
    output: str | Path | None = None,
    only: str | None = None,
    force: bool = False,
    jobs: int | str | None = None,
    executor: str | None = None,
    address: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    meter: bool = True,
    share: bool = True,
    report: bool = True,
    formats: Sequence[str] = ("svg",),
    mix_suites: bool = False,
    progress: bool = False,
    verbose: bool = False,
    host: PluginHost | None = None,
) -> RunResult:
    """Run a suite as `pcnbench run SUITE` does, from Python; return what happened.

    The keyword arguments are the command's options (`output`, `only`, `force`, `jobs`,
    `executor`, `address`, `device`, `threads`; `meter=False` is `--no-meter`, `share=False`
    `--no-share`, `report=False` `--no-report`, `formats` `--formats`). Nothing is printed
    unless asked: `progress=True` shows a line per cell, `verbose=True` prints warnings as they
    come (otherwise they are kept in `RunResult.warnings`). A suite that does not validate
    raises `pcnbench.SuiteError`, whose message is the command's `file:line:col: key: ...`;
    other bad input raises `pcnbench.PcnbenchError`. Failed cells do not raise: the result
    says so. `host` is the plugins to use (default: the installed ones).
    """
    import sys

    from pcnbench.manager import load_plugins

    host = host or load_plugins(strict=False)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if verbose:
            print(message, file=sys.stderr)

    loaded, runner = prepare(
        suite,
        host,
        output=output,
        device=device,
        jobs=jobs,
        executor=executor,
        address=address,
        threads=threads,
        meter=meter,
        share=share,
        argv=["pcnbench.run", str(suite)],
        warn=warn,
    )
    if progress:
        runner.progress = _Lines(loaded)
    summary = run_cells(loaded, runner, only=only, force=force, mix_suites=mix_suites)
    result = RunResult(
        suite=loaded.name,
        output=runner.output,
        selected=list(summary.selected),
        done=list(summary.done),
        failed=list(summary.failed),
        skipped=summary.skipped,
        interrupted=summary.interrupted,
        warnings=warnings,
    )
    index = runner.output / "index.html"
    if report and (summary.done or summary.failed or not index.is_file()):
        result.report_error = build_report(runner.output, host, formats=tuple(formats))
    if report and result.report_error is None and index.is_file():
        result.report = index
    return result


class _Lines:
    """A progress that prints a line as each cell starts (the runner moves it like rich's)."""

    def __init__(self, loaded: LoadedSuite) -> None:
        self.names = {c.label for c in loaded.cells}
        self.tasks = 0

    def add_task(self, description: str, **_: Any) -> int:
        """A cell starting: a line."""
        self.tasks += 1
        if description in self.names:
            print(f"start  {description}", flush=True)
        return self.tasks

    def update(self, task: Any, **_: Any) -> None:
        """Steps within a cell: not printed."""

    def advance(self, task: Any, advance: float = 1) -> None:
        """A cell finished: not printed."""

    def remove_task(self, task: Any) -> None:
        """A cell's task ends."""
