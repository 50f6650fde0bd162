"""The `Patterns` parameter type: layer-name glob patterns, importable without torch."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Patterns", "split_patterns"]


def split_patterns(value: Any) -> Any:
    """Read one comma-separated string as a tuple of patterns; pass anything else through."""
    # A suite expands a list into a grid, so one list of patterns can also be "fc, blocks.0.*".
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


Patterns = Annotated[tuple[str, ...], BeforeValidator(split_patterns)]
"""A parameter type for layer-name glob patterns: a list, or one comma-separated string.

A list in a suite expands into a grid (one cell per value), so `exclude: [fc, conv1]` is two
cells each excluding one layer, and `exclude: "fc, conv1"` is one cell excluding both.
"""
