"""What each method will reduce of each model (planned) or left dense (stored), in lines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pcnbench.cli.formatting import format_value
from pcnbench.cli.terminal import table_width, wrapped
from pcnbench.labels import is_missing

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from pcnbench.cells import Choice
    from pcnbench.coverage import Coverage
    from pcnbench.suite import LoadedSuite

    Settings = list[tuple[Choice, Coverage]]  # a method's settings and what each reduces


def _coverage_groups(loaded: LoadedSuite) -> list[tuple[str, Settings]]:
    """Each model × method of the suite's coverage (`model, `), with its settings' accounts."""
    several = len({id(d) for d, *_ in loaded.coverage}) > 1
    groups: dict[tuple[int, int, str], tuple[str, Settings]] = {}
    for dataset, model, method, account in loaded.coverage:
        where = f"{model.label} on {dataset.label}, " if several else f"{model.label}, "
        key = (id(dataset), id(model), method.name)
        groups.setdefault(key, (where, []))[1].append((method, account))
    return list(groups.values())


def _share(account: Coverage) -> str:
    """The share of the model `account` reduces: `87.1%`, or `up to 87.1%` where estimated."""
    return f"{'' if account.exact else 'up to '}{account.fraction:.1%}"


def coverage_lines(loaded: LoadedSuite, width: int | None) -> list[str]:
    """The share of each model's parameters each method (or method setting) will reduce."""
    if not loaded.coverage:
        return []
    lines = ["parameters each method will reduce, by model:\n"]
    for where, settings in _coverage_groups(loaded):
        shares = {_share(account) for _, account in settings}
        total = settings[0][1].total
        if len(shares) == 1:
            texts = [f"{where}{settings[0][0].name}: {shares.pop()} of {total:,}"]
        else:  # settings differ (patterns, layers): one line each
            texts = [f"{where}{m.label}: {_share(a)} of {total:,}" for m, a in settings]
        for text in texts:
            lines.extend(f"{line}\n" for line in wrapped(text, width, "  ", "    "))
    return lines


def coverage_warnings(loaded: LoadedSuite) -> list[str]:
    """One line per model × method that will leave much of the model dense unasked."""
    from pcnbench.coverage import WARN_SHARE, Reason

    warnings = []
    for where, settings in _coverage_groups(loaded):
        method, account = max(settings, key=lambda item: item[1].unexpected_share())
        title = where + (method.label if len(settings) > 1 else method.name)
        share = account.unexpected_share()
        if share <= WARN_SHARE:
            continue
        odd = account.unexplained() or account.unexplained(conventional=True)
        odd = [row for row in odd if row.reason != Reason.PATTERN]
        warnings.append(
            f"warning: {title} will leave {share:.1%} of the model's parameters dense "
            f"beyond the suite's patterns: {account.grouped(odd)}"
        )
    return warnings


def print_left_dense(frame: pd.DataFrame, out: Console) -> None:
    """For each method setting, the largest tensors it left dense beyond convention, and why."""
    from pcnbench.coverage import Reason
    from pcnbench.labels import row_parts, short_labels

    if "left_dense" not in frame.columns or frame.empty:
        return
    records = frame.to_dict("records")
    labels = short_labels([row_parts(r) for r in records], seed=False)
    said: dict[str, str] = {}
    for r in records:
        label = labels[r["cell_id"]]
        rows = r.get("left_dense")
        if label in said or is_missing(rows):
            continue
        rows = json.loads(rows) if isinstance(rows, str) else rows
        odd = [row for row in rows if row.get("reason") not in Reason.CONVENTIONAL]
        if not odd:
            continue
        named = "; ".join(f"{o['tensor']} ({o['params']:,}): {o['reason']}" for o in odd[:3])
        more = f"; … {len(odd) - 3} more" if len(odd) > 3 else ""
        coverage = format_value(r.get("coverage"), "coverage")
        said[label] = f"{label}: {coverage} reduced; {named}{more}"
    if said:
        width = table_width(out)
        lines = ["left dense (the largest tensors each setting did not reduce, and why):"]
        for text in said.values():
            lines.extend(wrapped(text, width, "  ", "    "))
        out.file.writelines(f"{line}\n" for line in lines)
