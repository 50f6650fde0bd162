"""How one stored value reads in a terminal: counts, accuracies, shares, seconds, epochs."""

from __future__ import annotations

from typing import Any

from pcnbench.labels import is_missing, plain_value


def format_value(value: Any, column: str) -> str:
    """The value of a result's `column` as a table shows it ("—" where missing)."""
    if is_missing(value):
        return "—"
    if column in ("params", "macs", "dense_params", "dense_macs"):
        return f"{int(value):,}"
    if column == "accuracy":
        return f"{100 * float(value):.2f}%"
    if column == "coverage":  # the share of the model's parameters the method reduced
        return f"{100 * float(value):.1f}%"
    if column == "epochs_trained" and float(value).is_integer():
        return f"{int(value)}"  # whole epochs as whole numbers: 15, not 15.0
    if column in ("train_time_s", "epochs_trained"):
        return f"{float(value):.1f}"
    return str(value)


def format_point(value: Any) -> str:
    """A value that tells rows apart (a seed, IMP's level) as plain text ("" where missing)."""
    return "" if is_missing(value) else plain_value(value)


def format_number(value: float) -> str:
    """1,234 for a whole number, else 1,234.5 (up to 2 decimals)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
