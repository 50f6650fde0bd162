"""`pcnbench plugins [NAME]` (or `info`): the loaded plugins and what each registers, or one."""

from __future__ import annotations

import argparse
import sys

from pcnbench.cli.status_codes import EXIT_OK, EXIT_USAGE
from pcnbench.cli.terminal import rich_console


def cmd_plugins(args: argparse.Namespace) -> int:
    """List loaded plugins and what each registers, or describe the plugin NAME."""
    from rich.table import Table
    from rich.text import Text

    from pcnbench.manager import load_plugins

    host = load_plugins(strict=False)
    if args.name:
        from pcnbench.describe import describe_plugin

        print(describe_plugin(host, args.name))  # PcnbenchError with suggestions if unknown
        warning = host.failure_warning()
        if warning:
            print(warning, file=sys.stderr)
        return EXIT_OK
    table = Table(title="pcnbench plugins (entry-point group 'pcnbench')")
    for header in ("plugin", "distribution", "version", "registers"):
        table.add_column(header)
    for info in host.infos.values():
        parts = []
        for kind, got in info.registers.items():
            shown = ", ".join(got) if len(got) <= 8 else ", ".join(got[:6])
            if len(got) > 8:
                shown += f", … ({len(got)} in all)"
            parts.append(f"{kind}: {shown}")
        registers = f"[failed] {info.error}" if info.error else "; ".join(parts)
        table.add_row(*(Text(c) for c in (info.name, info.distribution, info.version, registers)))
    rich_console().print(table)
    warning = host.failure_warning()
    if warning:  # a broken environment: exit 2 (1 is for cells that ran and failed)
        print(warning, file=sys.stderr)
    return EXIT_USAGE if warning else EXIT_OK
