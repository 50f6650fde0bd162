"""Why cells failed: each distinct reason once with its count, and which cells they were."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console


def print_reasons(frame: pd.DataFrame, ids: list[str], out: Console) -> None:
    """The distinct reasons the cells `ids` failed, a count each (most frequent first)."""
    import textwrap

    from pcnbench.labels import error_groups

    rows = frame[frame["cell_id"].isin(set(ids))].drop_duplicates("cell_id")
    groups = error_groups(rows["error"].tolist(), rows["status"].astype(str).tolist())
    cells = f"{len(rows)} cell{'s' if len(rows) != 1 else ''}"
    failed = "failed" if set(rows["status"]) == {"failed"} else "not done"
    out.print(f"{cells} {failed}, by reason:", markup=False)
    width = max(40, out.width)
    for reason, count in groups:
        head = f"  {count} × "
        text = textwrap.fill(reason, width, initial_indent=head, subsequent_indent=" " * len(head))
        out.print(text, markup=False)


def failed_cells_line(failed: list[str]) -> str:
    """The ids of the failed cells (the first 6 of more than 8), and where to read why."""
    shown = failed if len(failed) <= 8 else [*failed[:6], "…"]
    count = f"; {len(failed)} in all" if len(failed) > 8 else ""
    return f"failed cells: {', '.join(shown)} (see `pcnbench results`{count})"
