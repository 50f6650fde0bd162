"""How validation words a plugin's rejection of a value, or a plugin's own failure."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def default_note(params: Any, key: str | None) -> str:
    """`(at_epoch is not set: 5 is its default)` when a rejected parameter was left unwritten."""
    fields = type(params).model_fields if isinstance(params, BaseModel) else {}
    if key is None or key not in fields or key in params.model_fields_set:
        return ""
    return f" ({key} is not set in the suite: {getattr(params, key)!r} is its default)"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most `limit` characters long."""
    # torch appends whole C++ backtraces to some messages
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plugin_failed(registry: Any, name: str, call: str, exc: Exception) -> str:
    """Say that a plugin's validation call raised something other than ParamError."""
    plugin = registry.plugin_of(name)
    return (
        f"{registry.kind} '{name}' (plugin '{plugin}') raised {type(exc).__name__} in {call}:"
        f" {first_line(exc)} (plugins reject values with pcnbench.api.ParamError(key, message))"
    )
