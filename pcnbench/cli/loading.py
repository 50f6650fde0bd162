"""What the commands load: the plugins, a suite with them, the output folder of a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pcnbench.errors import PcnbenchError

if TYPE_CHECKING:
    from pcnbench.manager import PluginHost
    from pcnbench.suite import LoadedSuite


def plugins() -> PluginHost:
    """The plugins; one warning line on stderr per plugin that failed to load (it is skipped)."""
    from pcnbench.manager import load_plugins

    host = load_plugins()
    warning = host.failure_warning()
    if warning:  # said once; a suite naming what a failed plugin provides fails as unknown
        print(warning, file=sys.stderr)
    return host


def suite_and_plugins(path: str) -> tuple[LoadedSuite, PluginHost]:
    """The suite at `path`, validated against the plugins, and the plugins."""
    from pcnbench.suite import load_suite

    host = plugins()
    return load_suite(path, host), host


def results_dir(given: str) -> Path:
    """The output folder a command reads (given itself or its results.db); error if none."""
    output = Path(given)
    if output.is_file():
        output = output.parent
    if not (output / "results.db").is_file():
        raise PcnbenchError(f"no results database at {output / 'results.db'} (run a suite first)")
    return output
