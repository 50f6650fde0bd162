"""pcnbench: a declarative benchmark harness for neural-network parameter reduction.

From Python: `pcnbench.run(suite, **options)` runs a suite as `pcnbench run` does and
`pcnbench.load(folder)` opens its results (see docs/python.md). Both are imported on first use,
so `import pcnbench` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcnbench.errors import PcnbenchError, SuiteError

if TYPE_CHECKING:
    from pcnbench.orchestration import RunResult, run
    from pcnbench.results import Results, load

__version__ = "0.2.0"
__all__ = ["PcnbenchError", "Results", "RunResult", "SuiteError", "load", "run"]

_LAZY = {
    "load": "results",
    "Results": "results",
    "run": "orchestration",
    "RunResult": "orchestration",
}


def __getattr__(name: str) -> Any:
    """Import `load`, `run` and their result types on first use (they bring in torch, pandas)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module == "results":
        from pcnbench import results as found
    else:
        from pcnbench import orchestration as found
    value = getattr(found, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, the ones not imported yet included."""
    return sorted({*globals(), *_LAZY})
