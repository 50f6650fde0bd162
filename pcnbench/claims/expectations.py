"""What a claim states: the quantities it compares, its expectations, its selectors' labels."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from pcnbench.schema import Pick, ReferenceBaseline, Selector

__all__ = [
    "QUANTITIES",
    "REFERENCE_QUANTITIES",
    "Expectation",
    "Quantity",
    "parse_expectation",
    "pick_label",
    "selector_label",
]


@dataclass(frozen=True)
class Quantity:
    """A quantity a claim may name: the result column it reads and how it compares."""

    name: str
    column: str  # the result column read on both sides
    unit: str  # the quantity's own unit, for a plain difference ("" for counts)
    kind: str  # "pp": difference ×100; "inverse": baseline/subject ratio; "plain": either


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("accuracy", "accuracy", "pp", "pp"),
        Quantity("compression", "params", "x", "inverse"),
        Quantity("speedup", "macs", "x", "inverse"),
        Quantity("params", "params", "", "plain"),
        Quantity("macs", "macs", "", "plain"),
        Quantity("train_time_s", "train_time_s", "s", "plain"),
        Quantity("incurred_time_s", "incurred_time_s", "s", "plain"),
        Quantity("train_energy_j", "train_energy_j", "J", "plain"),
        Quantity("latency_ms", "latency_ms", "ms", "plain"),
        Quantity("latency_ratio", "latency_ratio", "", "plain"),
        Quantity("epochs_trained", "epochs_trained", "epochs", "plain"),
    )
}

# What a published reference states: the quantities a claim can hold against it.
REFERENCE_QUANTITIES = {"accuracy": "accuracy", "params": "params", "macs": "macs"}

_OPS = {">=": ">=", "≥": ">=", ">": ">", "<=": "<=", "≤": "<=", "<": "<"}
_EXPECT = re.compile(
    r"^\s*(?P<op>[<>=!≥≤]+)?\s*(?P<num>[-+−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"\s*(?P<unit>[^\s\d]*)\s*$"
)


@dataclass(frozen=True)
class Expectation:
    """One parsed expectation: `quantity OP value` with the value in `unit` ("pp", "x", ...)."""

    quantity: str
    op: str
    value: float
    unit: str
    text: str  # as written
    ratio: bool  # judged on ratios (log scale), else on differences

    def describe(self) -> str:
        """`accuracy >= -0.5pp`, `train_time_s < 1x`."""
        return f"{self.quantity} {self.text.strip()}"


def parse_expectation(quantity: str, text: Any) -> Expectation:
    """Parse `OP VALUE[UNIT]` for `quantity`; ValueError saying what is wrong (KeyError: quantity).

    KeyError carries a did-you-mean message for a quantity pcnbench does not store.
    """
    q = QUANTITIES.get(quantity)
    if q is None:
        close = difflib.get_close_matches(quantity, list(QUANTITIES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(
            f"unknown quantity '{quantity}'{hint} (a claim compares {', '.join(QUANTITIES)})"
        )
    example = {"pp": "'>= -0.5pp'", "inverse": "'>= 10'"}.get(q.kind, "'< 1x' or '<= 60'")
    if not isinstance(text, str):
        raise ValueError(
            f"write the expectation as a quoted string OP VALUE, e.g. {example} "
            f"(got {text!r}; OP is >=, >, <= or <)"
        )
    match = _EXPECT.match(text)
    if match is None:
        raise ValueError(f"cannot read {text!r}: write OP VALUE[UNIT], e.g. {example}")
    op = match["op"]
    if op is None or op not in _OPS:
        got = f"'{op}'" if op else "no operator"
        raise ValueError(f"{got} in {text!r}: the operator is >=, >, <= or < (≥ and ≤ too)")
    value = float(match["num"].replace("−", "-"))
    unit = match["unit"].replace("×", "x")
    if q.kind == "pp":
        if unit not in ("", "pp"):
            raise ValueError(
                f"unit '{unit}' in {text!r}: accuracy compares as the difference subject − "
                "baseline in percentage points (write pp or nothing, e.g. '>= -0.5pp')"
            )
        return Expectation(quantity, _OPS[op], value, "pp", text, ratio=False)
    if q.kind == "inverse":
        if unit not in ("", "x"):
            raise ValueError(
                f"unit '{unit}' in {text!r}: {quantity} is the ratio baseline/subject of "
                f"{q.column} (write x or nothing, e.g. '>= 10')"
            )
        ratio = True
    else:
        if unit not in ("", "x"):
            own = f", or nothing for a difference in {q.unit}" if q.unit else ""
            raise ValueError(
                f"unit '{unit}' in {text!r}: write x for the ratio subject/baseline{own} "
                "(a plain number is the difference subject − baseline)"
            )
        ratio = unit == "x"
    if ratio and value <= 0:
        raise ValueError(f"{text!r}: a ratio bound must be positive (got {value:g})")
    return Expectation(quantity, _OPS[op], value, "x" if ratio else q.unit, text, ratio=ratio)


def pick_label(pick: Pick) -> str:
    """`resnet(depth=20,width=4)`, or the bare name: the way cell labels show a setting."""
    if not pick.params:
        return pick.name
    inner = ",".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in pick.params.items()
    )
    return f"{pick.name}({inner})"


def selector_label(selector: Selector | ReferenceBaseline) -> str:
    """`model=resnet(depth=20), method=pcn`, or `reference 'CNN (Greydanus & Kobak 2024)'`."""
    if isinstance(selector, ReferenceBaseline):
        return f"reference '{selector.reference}'"
    parts = [
        f"{axis}={pick_label(pick)}"
        for axis in ("dataset", "model", "method")
        if (pick := getattr(selector, axis)) is not None
    ]
    return ", ".join(parts) or "every cell"
