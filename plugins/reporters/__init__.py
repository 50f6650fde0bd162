"""Built-in reporters (being written; registers nothing yet)."""

from __future__ import annotations

from pcnbench.hookspecs import Register, hookimpl


@hookimpl
def register_reporters(register: Register) -> None:
    """Register the built-in reporters (none yet)."""
