"""The `magnitude` reduction method (being written; registers nothing yet)."""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl


@hookimpl
def register_methods(register: Register) -> None:
    """Register the method (none yet)."""
