"""`pcnbench claims DIR`: judge the suite's claims from its stored results."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from pcnbench.cli import loading


def cmd_claims(args: argparse.Namespace) -> int:
    """Judge the suite's claims from its stored results; exit 1 when one is refuted."""
    from pcnbench.claims import exit_code, format_claims
    from pcnbench.report import load_report_data

    output = loading.results_dir(args.dir)
    data = load_report_data(output, loading.plugins())
    # wrapped to the terminal (or to COLUMNS); written to a file or a pipe, lines stay whole
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 0
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else width
    sys.stdout.write(format_claims(data.claims, f"{data.suite} ({output})", width) + "\n")
    return exit_code(data.claims)
