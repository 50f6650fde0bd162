"""`pcnbench report DIR`: build the HTML report, tables and figures of a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pcnbench.cli import loading
from pcnbench.cli.status_codes import EXIT_OK, EXIT_USAGE
from pcnbench.cli.terminal import rich_console

if TYPE_CHECKING:
    from rich.console import Console

    from pcnbench.manager import PluginHost


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report from a results database."""
    output = loading.results_dir(args.dir)
    target = Path(args.output) if args.output else None
    ok = write_report(output, loading.plugins(), rich_console(), target, args.formats)
    return EXIT_OK if ok else EXIT_USAGE


def write_report(
    output: Path,
    host: PluginHost,
    out: Console,
    target: Path | None = None,
    formats: tuple[str, ...] = ("svg",),
) -> bool:
    """Build the report of `output` (into `target`); False, said on stderr, if incomplete.

    The results stay stored whatever happens to the report.
    """
    from pcnbench.orchestration import build_report

    error = build_report(output, host, target, formats)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return False
    out.print(f"report: {(target or output) / 'index.html'}", markup=False)
    return True
