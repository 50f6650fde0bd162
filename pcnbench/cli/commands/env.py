"""`pcnbench env`: devices, versions, and what this machine can meter, and how."""

from __future__ import annotations

import argparse

from pcnbench.cli.status_codes import EXIT_OK
from pcnbench.cli.terminal import rich_console


def cmd_env(args: argparse.Namespace) -> int:
    """Print devices, versions, and what each meter can measure here (or why not)."""
    from rich.table import Table
    from rich.text import Text

    from pcnbench.manager import load_plugins
    from pcnbench.provenance import environment

    out = rich_console(wide=True)
    env = environment()
    out.print(f"pcnbench {env['pcnbench']}, Python {env['python']}, torch {env['torch']}")
    gpus = ", ".join(env["gpus"]) or "none"
    out.print(f"CUDA available: {env['cuda_available']} (CUDA {env['cuda']}); GPUs: {gpus}")
    out.print(f"CPU: {env['cpu']}, {env['cpu_count']} cores; torch threads {env['torch_threads']}")
    host = load_plugins(strict=False)
    table = Table(title="meters (energy: measured or unmetered; estimates labelled)")
    for header in ("meter", "plugin", "available", "method", "detail"):
        table.add_column(header)
    for name in host.meters.names():
        try:
            probe = host.meters.get(name).probe()
            plugin = host.meters.plugin_of(name)
            row: tuple[str, ...] = (name, plugin, "yes" if probe.available else "no")
            row += (probe.method, probe.detail)
        except Exception as exc:
            row = (name, host.meters.plugin_of(name), "no", "error", f"{type(exc).__name__}: {exc}")
        table.add_row(*(Text(str(c)) for c in row))
    out.print(table)
    out.print(
        "Time: wall and process-CPU seconds per phase, device synchronized (always measured). "
        "Latency/throughput: measured per result on the training device.",
        soft_wrap=False,  # sentences wrap at the terminal's width
    )
    for name in host.executors.names():
        try:
            said = host.executors.get(name).probe()
        except Exception as exc:
            said = f"probe failed: {type(exc).__name__}: {exc}"
        line = f"executor {name} ({host.executors.plugin_of(name)}): {said}"
        out.print(line, markup=False, soft_wrap=False)
    return EXIT_OK
