"""Check (and download, where asked) every dataset a run needs once, before any cell trains."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pcnbench.cells import Cell
from pcnbench.errors import ParamError, PcnbenchError, SuiteError


def prepare_datasets(loaded: Any, host: Any, cells: Iterable[Cell]) -> None:
    """Call each distinct dataset grid point's `prepare` once; failures become one SuiteError.

    The error is located at the suite's dataset entry and carries the plugin's message (the
    folder it looked in and what to do), so a run stops before training instead of failing
    every cell with the same message.
    """
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        choice = cell.dataset
        key = (choice.name, repr(choice.params))
        if key in seen:
            continue
        seen.add(key)
        plugin = host.datasets.get(choice.name)
        base = ("datasets", choice.entry)
        try:
            plugin.prepare(choice.params)
        except ParamError as exc:
            at = choice.where.get(exc.key, ("params", exc.key)) if exc.key else ()
            raise loaded.source.error((*base, *at), exc.message) from None
        except SuiteError:
            raise
        except PcnbenchError as exc:
            message = str(exc)
            if not message.startswith(f"{choice.name}:"):
                message = f"{choice.name}: {message}"
            raise loaded.source.error(base, message) from None
        except Exception as exc:
            owner = host.datasets.plugin_of(choice.name)
            raise loaded.source.error(
                base,
                f"dataset '{choice.name}' (plugin '{owner}') raised in prepare: "
                f"{type(exc).__name__}: {exc}",
            ) from None
