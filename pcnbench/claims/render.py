"""Claims as text: one check's numbers, and the plain-text table of a suite's claims."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pcnbench.claims.verdicts import REFUTED, SUPPORTED, VERDICTS
from pcnbench.contracts import ClaimCheck, ClaimResult

__all__ = ["format_check", "format_claims"]


def _num(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return str(x)
    text = f"{x:.3g}" if abs(x) >= 1000 or (x != 0 and abs(x) < 0.01) else f"{x:.2f}"
    if signed and x > 0:
        text = "+" + text
    return text.replace("-", "−")


def format_check(check: ClaimCheck) -> str:
    """`accuracy −0.21 pp [−0.50, +0.08] ≥ −0.5 ✓` style: the numbers that decided one check."""
    unit = {"x": "×", "": ""}.get(check.unit, f" {check.unit}")
    op = {">=": "≥", "<=": "≤"}.get(check.op, check.op)
    mark = {SUPPORTED: "✓", REFUTED: "✗"}.get(check.verdict, "?")
    how = (
        f"{check.n} seeds vs the published value"
        if check.published
        else f"paired, {check.n} seeds"
        if check.paired
        else f"Welch, n={check.n}"
    )
    signed = check.unit != "x"
    interval = (
        f"95% CI {_num(check.low, signed)} … {_num(check.high, signed)}"
        if check.n >= 2
        else "no interval: one seed"
    )
    return (
        f"{check.quantity} {_num(check.estimate, signed)}{unit} ({interval}; {how}) "
        f"{op} {_num(check.value)}{unit} {mark}"
    )


def format_claims(claims: Sequence[ClaimResult], where: str = "", width: int = 0) -> str:
    """The claims as a plain-text table: verdict, name, and per operating point the numbers.

    With `width`, lines longer than it wrap under their own indent (0: no wrapping).
    """
    text = _format_claims(claims, where)
    if width <= 0:
        return text
    import textwrap

    out = []
    for line in text.split("\n"):
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out.extend(
            textwrap.wrap(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False)
            or [""]
        )
    return "\n".join(out)


def _format_claims(claims: Sequence[ClaimResult], where: str) -> str:
    if not claims:
        return f"no claims: the suite{f' in {where}' if where else ''} declares none\n"
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    head = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines = [f"claims{f' of {where}' if where else ''}: {head}", ""]
    width = max(len(v) for v in VERDICTS)
    for claim in claims:
        lines.append(f"{claim.verdict.upper():<{width}}  {claim.name}")
        pad = " " * (width + 2)
        if claim.subject:
            over = "" if claim.over == "any" else " (over all operating points)"
            lines.append(
                f"{pad}{claim.subject} vs {claim.baseline}: {'; '.join(claim.expect)}{over}"
            )
            if claim.source:
                lines.append(f"{pad}published in: {claim.source}")
        if claim.reason:
            lines.append(f"{pad}not evaluated: {claim.reason}")
        for point in claim.points:
            star = " ←" if point.label == claim.decided_by and len(claim.points) > 1 else ""
            lines.append(f"{pad}{point.label}: {point.verdict}{star}")
            for check in point.checks:
                lines.append(f"{pad}  {format_check(check)}")
        lines.append("")
    return "\n".join(lines)
