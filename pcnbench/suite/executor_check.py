"""The suite's executor: a name the plugins provide, and options its `Options` model accepts."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pcnbench.schema import Suite, pydantic_error
from pcnbench.yamlsrc import Source


def check_executor(suite: Suite, source: Source, executors: Any) -> None:
    """Refuse an executor no plugin provides; validate the options of the one named."""
    if suite.executor.name not in executors:
        raise source.error(
            ("executor", "name")
            if isinstance(source.data.get("executor"), dict)
            else ("executor",),
            executors.unknown_message(suite.executor.name),
        )
    check_executor_options(suite, source, executors.get(suite.executor.name))


def check_executor_options(suite: Suite, source: Source, executor: Any) -> None:
    """Validate `executor.options` against the executor's `Options` model, where it has one."""
    model = getattr(executor, "Options", None)
    if model is None:
        return
    try:
        model.model_validate(suite.executor.options)
    except ValidationError as exc:
        raise pydantic_error(exc, source, ("executor", "options"), model) from None
