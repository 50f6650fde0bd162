"""`load_suite`: read a suite file and run every check on it, in order, into a `LoadedSuite`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pcnbench.cells import expand
from pcnbench.schema import AXES, Suite, parse_suite
from pcnbench.suite.axes import resolve_axis
from pcnbench.suite.claims_check import check_claims, check_references
from pcnbench.suite.executor_check import check_executor
from pcnbench.suite.loaded import LoadedSuite
from pcnbench.suite.matrix import check_duplicates, check_excludes, check_size
from pcnbench.suite.models_check import check_compatibility
from pcnbench.yamlsrc import load_source, load_text


def load_suite(
    path: str | Path,
    host: Any,
    *,
    text: str | None = None,
    parsed: Callable[[Suite], None] | None = None,
) -> LoadedSuite:
    """Load, validate and resolve a suite file against the loaded plugins (a PluginHost).

    `parsed`, when given, is called with the suite's settings as soon as the file is read and
    its shape checked, before the plugins validate its grid (which builds each model).
    """
    if text is None:
        source = load_source(path)
        raw_text = source.text
    else:
        source = load_text(text, str(path))
        raw_text = text
    suite = parse_suite(source)
    check_size(suite, source)
    if parsed is not None:
        parsed(suite)
    resolved = {
        axis: resolve_axis(
            axis,
            getattr(suite, axis),
            getattr(host, axis),
            source,
            suite.recipe,
            limit=suite.max_cells,
        )
        for axis in AXES
    }
    loaded = LoadedSuite(
        suite=suite,
        source=source,
        datasets=resolved["datasets"],
        models=resolved["models"],
        methods=resolved["methods"],
        sha256=hashlib.sha256(raw_text.encode("utf-8")).hexdigest(),
        text=raw_text,
    )
    check_excludes(loaded)
    loaded.cells = expand(
        suite.name,
        loaded.datasets,
        loaded.models,
        loaded.methods,
        suite.seeds,
        suite.recipe,
        suite.exclude,
    )
    if not loaded.cells:
        raise source.error(("exclude",), "the exclude rules remove every cell", key=True)
    check_duplicates(loaded)
    check_claims(loaded)
    check_references(loaded)
    check_compatibility(loaded, host)
    executors = getattr(host, "executors", None)
    if executors is not None:
        check_executor(suite, source, executors)
    return loaded
