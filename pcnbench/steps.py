"""Points in training written as epochs or optimizer steps: `5`, `"5ep"`, `"500it"`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["StepSpec", "parse_steps"]

_SPEC = re.compile(r"^\s*(\d+)\s*(ep|it)?\s*$")


@dataclass(frozen=True)
class StepSpec:
    """A count of epochs (`unit` "ep") or optimizer steps (`unit` "it")."""

    count: int
    unit: Literal["ep", "it"]

    def to_step(self, steps_per_epoch: int) -> int:
        """The optimizer step this names, given the epoch length."""
        return self.count if self.unit == "it" else self.count * steps_per_epoch

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_steps(value: Any) -> StepSpec:
    """Parse 5, "5", "5ep" (epochs) or "500it" (steps); ValueError for anything else."""
    match = None
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        match = _SPEC.match(str(value))
    if match is None:
        raise ValueError(
            f"expected epochs (5 or '5ep') or optimizer steps ('500it'); got {value!r}"
        )
    return StepSpec(int(match.group(1)), "it" if match.group(2) == "it" else "ep")
