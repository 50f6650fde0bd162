"""`pcnbench run SUITE`: run (or with --dry-run, plan) a suite, then say how it went."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pcnbench.cli import loading
from pcnbench.cli.columns import point_keys
from pcnbench.cli.commands.report import write_report
from pcnbench.cli.failures import failed_cells_line, print_reasons
from pcnbench.cli.plan import print_indented, print_plan, to_run_line
from pcnbench.cli.progress import run_progress
from pcnbench.cli.projection_lines import on_cuda, projection_text
from pcnbench.cli.status_codes import EXIT_FAILED_CELLS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from pcnbench.cli.tables import print_summary
from pcnbench.cli.terminal import rich_console

if TYPE_CHECKING:
    from rich.console import Console

    from pcnbench.manager import PluginHost
    from pcnbench.runner import Runner
    from pcnbench.suite import LoadedSuite


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or with --dry-run, plan) a suite."""
    from pcnbench.orchestration import prepare, run_cells, selected_cells

    host = loading.plugins()
    loaded, runner = prepare(
        args.suite,
        host,
        output=args.output,
        device=args.device,
        jobs=args.jobs,
        executor=args.executor,
        address=args.address,
        threads=args.threads,
        meter=not args.no_meter,
        share=not args.no_share,
        argv=sys.argv,
        # said once, as the run starts; the run's environment records it too
        warn=lambda message: print(message, file=sys.stderr),
        warm=not args.dry_run,
    )
    from pcnbench.store import Store

    out = rich_console()
    if args.dry_run:
        return _dry_run(args, loaded, runner, host, out)
    selected = selected_cells(loaded, args.only)
    with run_progress(args.quiet, selected, host, out) as progress:
        runner.progress = progress
        summary = run_cells(
            loaded, runner, only=args.only, force=args.force, mix_suites=args.mix_suites
        )
    store = Store(runner.output / "results.db", readonly=True)
    try:
        frame = store.results_frame()
    finally:
        store.close()
    print_summary(frame, set(summary.selected), rich_console(wide=True), point_keys(host))
    index = runner.output / "index.html"
    reported = True
    if not summary.done and not summary.failed and index.is_file():
        out.print(f"report: {index} (nothing new to report)", markup=False)
    elif not args.no_report:
        reported = write_report(runner.output, host, out, formats=args.formats)
    out.print(
        f"{len(summary.done)} trained, {summary.skipped} already done, "
        f"{len(summary.failed)} failed → {runner.output / 'results.db'}"
    )
    if summary.interrupted:
        out.print("interrupted: finished cells are stored; run the same command to continue")
        return EXIT_INTERRUPTED
    if summary.failed:
        print_reasons(frame, summary.failed, rich_console(wide=True))
        out.print(failed_cells_line(summary.failed), markup=False)
        return EXIT_FAILED_CELLS
    return EXIT_OK if reported else EXIT_USAGE  # an incomplete report is not a success


def _dry_run(
    args: argparse.Namespace, loaded: LoadedSuite, runner: Runner, host: PluginHost, out: Console
) -> int:
    """The plan of the cells --only selects, what is done, and (on a GPU) the hours it takes."""
    cells, todo = runner.plan(args.only, args.force)
    print_plan(loaded, cells, todo, out, host)
    said = [to_run_line(cells, todo, runner.output, host)]
    if todo and (args.project or on_cuda(args.device or loaded.suite.device)):
        text = projection_text(
            todo, loaded, host, args.device or loaded.suite.device, not args.no_share
        )
        said.extend(text.splitlines())
    print_indented(said, out)
    return EXIT_OK
