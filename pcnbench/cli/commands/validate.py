"""`pcnbench validate SUITE`: check a suite and print its expanded matrix."""

from __future__ import annotations

import argparse

from pcnbench.cli import loading
from pcnbench.cli.plan import print_plan
from pcnbench.cli.status_codes import EXIT_OK
from pcnbench.cli.terminal import rich_console


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a suite and print its expanded matrix."""
    loaded, host = loading.suite_and_plugins(args.suite)
    print_plan(loaded, loaded.cells, None, rich_console(), host)
    return EXIT_OK
