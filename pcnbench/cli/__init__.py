"""The `pcnbench` command: run, validate, plugins, results, report, env, claims.

`entry.main` parses the arguments (`parser`) and calls the command (`commands/`, one module
each), which orchestrates through `pcnbench.orchestration` and prints through the modules
beside it: `plan` and `coverage_lines` (what a suite will do), `progress` (bars or lines per
cell), `tables`, `columns` and `failures` (results and why cells failed), `terminal` (the
console and its width). Heavy libraries (torch, pandas, rich) are imported where they are used.
"""

from pcnbench.cli.entry import console, exit_now, main
from pcnbench.cli.parser import build_parser
from pcnbench.cli.status_codes import EXIT_FAILED_CELLS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = [
    "EXIT_FAILED_CELLS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "console",
    "exit_now",
    "main",
]
