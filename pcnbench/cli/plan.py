"""The plan of a suite as `validate` and `run --dry-run` print it: a line per cell with the
epochs it trains, why each method setting trains that many, what each method will reduce."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pcnbench.cli.coverage_lines import coverage_lines, coverage_warnings
from pcnbench.cli.formatting import format_number
from pcnbench.cli.terminal import table_width, wrapped

if TYPE_CHECKING:
    from rich.console import Console

    from pcnbench.cells import Cell
    from pcnbench.contracts import EpochPlan
    from pcnbench.manager import PluginHost
    from pcnbench.suite import LoadedSuite

    Plans = dict[str, EpochPlan | None]  # cell id → its method's plan


def print_plan(
    loaded: LoadedSuite,
    cells: list[Cell],
    todo: list[Cell] | None,
    out: Console,
    host: PluginHost,
) -> None:
    """The suite's cells, each with its epochs (and with `todo`, whether it runs or is done)."""
    todo_ids = {c.id for c in todo} if todo is not None else None
    plans = epoch_plans(cells, host)
    count = f"{len(cells):,} cell{'s' if len(cells) != 1 else ''}"
    width = table_width(out)
    head = f"suite '{loaded.name}' ({loaded.file}): {count}, {epochs_planned(cells, plans)}"
    out.file.writelines(f"{line}\n" for line in wrapped(head, width))
    from pcnbench.labels import cell_parts, short_labels

    # what tells each cell apart among these (the full label is what --only matches)
    parts = [cell_parts(c) for c in cells]
    short = short_labels(parts)
    setting = short_labels(parts, seed=False)
    rows = []
    for cell in cells:
        mark = ""
        if todo_ids is not None:
            mark = "  [run]" if cell.id in todo_ids else "  [done, skip]"
        rows.append((cell.id, short[cell.id], f"{_epoch_count(cell, plans)}{mark}"))
    lines = [f"{line}\n" for line in plan_lines(rows, width)]
    # why each cell trains what it does, once per method setting (the seeds share it)
    reasons: dict[str, str] = {}
    for cell in cells:
        plan = plans[cell.id]
        if plan is None:
            why = f"at least {cell.recipe.epochs:,} (recipe.epochs; the method plans no more)"
        else:
            why = plan.why or format_number(plan.total)
        reasons.setdefault(setting[cell.id], why)
    if reasons:
        lines.append("epochs per cell, by method setting:\n")
        for label, why in reasons.items():
            lines.extend(f"{line}\n" for line in wrapped(f"{label}: {why}", width, "  ", "    "))
    lines.extend(coverage_lines(loaded, width))
    if lines:
        # Plain text written as is: rich inspects every character it prints, seconds on a
        # large matrix, and these lines hold no markup.
        out.file.writelines(lines)
        out.file.flush()
    for warning in coverage_warnings(loaded):
        print(warning, file=sys.stderr, flush=True)


def plan_lines(rows: list[tuple[str, str, str]], width: int | None) -> list[str]:
    """`id  label  epochs` lines within `width` (any, when None).

    Whole cell ids where every line fits, else their first 8 characters (which `--only`
    matches too); a label still too long wraps under itself, the epochs after its end. The
    label is never cut: it is what tells the cells apart.
    """
    import textwrap

    from rich.cells import cell_len

    def fits(line: str) -> bool:
        return width is None or cell_len(line) <= width

    keep = 16 if all(fits(f"{i}  {label}  {tail}") for i, label, tail in rows) else 8
    lines = []
    for ident, label, tail in rows:
        head = f"{ident[:keep]}  "
        line = f"{head}{label}  {tail}"
        if fits(line):
            lines.append(line)
            continue
        glued = tail.replace(" ", "\0")  # the epochs and mark stay on one line
        wrapped_label = textwrap.wrap(
            f"{label}  {glued}",
            max(20, (width or 0) - len(head)),
            break_long_words=False,
            break_on_hyphens=False,
        )
        pad = " " * len(head)
        lines.extend(
            (head if n == 0 else pad) + part.replace("\0", " ")
            for n, part in enumerate(wrapped_label)
        )
    return lines


def epoch_plans(cells: list[Cell], host: PluginHost) -> Plans:
    """Cell id → its method's EpochPlan (None where the method does not plan its epochs)."""
    plans: Plans = {}
    by_setting: dict[tuple[int, int], EpochPlan | None] = {}  # a setting and recipe plan once
    for cell in cells:
        key = (id(cell.method), id(cell.recipe))
        if key not in by_setting:
            method = host.methods.get(cell.method.name)
            by_setting[key] = method.plan_epochs(cell.method.params, cell.recipe)
        plans[cell.id] = by_setting[key]
    return plans


def _epoch_count(cell: Cell, plans: Plans) -> str:
    """The epochs `cell` trains as its plan line ends: `15 ep`, or `≥15 ep` where unplanned."""
    plan = plans[cell.id]
    if plan is None:
        return f"≥{cell.recipe.epochs:,} ep"
    return f"{format_number(plan.total)} ep"


def epochs_planned(cells: list[Cell], plans: Plans) -> str:
    """The epochs a list of cells trains, so that a typo like epochs: 1000000000 shows."""
    total = sum(p.total if (p := plans[c.id]) is not None else c.recipe.epochs for c in cells)
    least = "at least " if any(plans[c.id] is None for c in cells) else ""
    return f"{least}{format_number(total)} epochs planned"


def to_run_line(cells: list[Cell], todo: list[Cell], output: Path, host: PluginHost) -> str:
    """What a dry run would train of `cells` (the rest is done), into `output`, in epochs."""
    return (
        f"{len(todo)} to run, {len(cells) - len(todo)} already done → {output}; "
        f"{epochs_planned(todo, epoch_plans(todo, host))} (before trunk sharing)"
    )


def print_indented(lines: Sequence[str], out: Console) -> None:
    """`lines` within the table width of `out`, each wrapping 4 columns past its own indent."""
    width = table_width(out)
    for line in lines:
        indent = line[: len(line) - len(line.lstrip())]
        out.file.writelines(f"{part}\n" for part in wrapped(line, width, "", indent + "    "))
    out.file.flush()
