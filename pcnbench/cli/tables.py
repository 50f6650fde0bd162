"""Tables of results: fitted to the terminal, the run's summary, and Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcnbench.cli.columns import table_columns
from pcnbench.labels import is_missing

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from pcnbench.labels import Column

_CONFIGURATION = (
    "suite",
    "dataset",
    "dataset_params",
    "model",
    "model_params",
    "method",
    "method_params",
)


def print_results_table(
    frame: pd.DataFrame, title: str, out: Console, columns: list[Column]
) -> None:
    """Print `columns` as a table that fits `out`'s width (see `pcnbench.labels.fit_columns`)."""
    import textwrap

    from rich import box
    from rich.table import Table
    from rich.text import Text

    from pcnbench.labels import fit_columns

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    fitted = fit_columns(columns, out.width)
    for col in fitted:
        table.add_column(
            col.header,
            justify=col.justify,
            width=col.width,
            no_wrap=col.overflow != "fold",
            overflow=col.overflow,
        )
    for i in range(len(frame)):
        table.add_row(*(Text(col.values[i]) for col in fitted))
    # the title on lines of its own, wrapped to the terminal (a long path broken anywhere)
    out.file.write("".join(f"{line}\n" for line in textwrap.wrap(title, max(20, out.width))))
    out.print(table)


def grouped(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` with each configuration's seeds together, in ascending order.

    Configurations keep the order they first appear in (the store's: the order cells were
    planned or ran), so a table reads dense, then each method's points, seed 0, 1, 2... and a
    cell's results (IMP's levels) in their order, however the cells' runs interleaved.
    """
    if frame.empty:
        return frame
    keys = [c for c in _CONFIGURATION if c in frame.columns]
    order = frame.assign(
        _configuration=frame.groupby(keys, sort=False, dropna=False).ngroup(),
        _position=range(len(frame)),
    )
    by = ["_configuration"] + [c for c in ("seed", "result") if c in frame.columns]
    order = order.sort_values([*by, "_position"], kind="stable", na_position="first")
    return frame.loc[order.index].reset_index(drop=True)


def print_summary(
    frame: pd.DataFrame,
    ids: set[str],
    out: Console,
    keys_of: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """The table of results a run ends with: the cells `ids`, without ids or errors."""
    frame = grouped(frame[frame["cell_id"].isin(ids)])
    columns = table_columns(frame, keys_of or {}, ids=False, errors=False)
    title = (
        "results (params: count; MACs: per sample, measured by torch FlopCounter; reduced: "
        "share of the model's parameters in tensors the method reduced; "
        "time: training wall-clock, s)"
    )
    print_results_table(frame, title, out, columns)


def markdown(frame: pd.DataFrame) -> str:
    """`frame` as a Markdown table, every column, missing values empty."""

    def cell(v: Any) -> str:
        if is_missing(v):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
