"""`pcnbench results DIR`: the stored results as a table, CSV, JSON, Markdown or Parquet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pcnbench.cli.columns import point_keys, table_columns
from pcnbench.cli.coverage_lines import print_left_dense
from pcnbench.cli.failures import print_reasons
from pcnbench.cli.status_codes import EXIT_OK
from pcnbench.cli.tables import grouped, markdown, print_results_table
from pcnbench.cli.terminal import rich_console
from pcnbench.errors import PcnbenchError

if TYPE_CHECKING:
    import pandas as pd

# JSON columns small enough for any CSV reader: what each cell's dataset, model and method were
_CSV_JSON_KEPT = frozenset(
    f"{axis}_{kind}" for axis in ("dataset", "model", "method") for kind in ("params", "setting")
)


def cmd_results(args: argparse.Namespace) -> int:
    """Print stored results, one row per result."""
    from pcnbench.store import Store

    store = Store.open_existing(args.dir)  # read-only: creates and changes nothing
    try:
        if args.format == "parquet":
            from pcnbench.results import results_with_times

            return _write_parquet(results_with_times(store), args.output)
        frame = store.results_frame()
    finally:
        store.close()
    if args.format == "csv":
        if not args.all_columns:
            frame = _without_large_json(frame)
        _emit(frame.to_csv(index=False), args.output)
    elif args.format == "json":
        records = json.loads(frame.to_json(orient="records"))
        _emit(json.dumps(records, indent=2) + "\n", args.output)
    elif args.format == "markdown":
        _emit(markdown(grouped(frame)) + "\n", args.output)
    else:
        out = rich_console(wide=True)
        frame = grouped(frame)
        columns = table_columns(frame, point_keys(), ids=True, errors=True)
        title = (
            f"results in {args.dir} (MACs: per sample; time: training wall-clock, s; "
            "all columns: --format csv or json)"
        )
        print_results_table(frame, title, out, columns)
        print_left_dense(frame, out)
        failed = frame[frame["status"] != "done"]["cell_id"].unique().tolist()
        if failed:
            print_reasons(frame, failed, out)
    return EXIT_OK


def _without_large_json(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` without the JSON columns that grow with the model (said on stderr, once)."""
    from pcnbench.results import json_columns

    dropped = [c for c in json_columns(frame) if c not in _CSV_JSON_KEPT]
    if dropped:
        print(
            f"note: left out {len(dropped)} JSON column{'s' if len(dropped) > 1 else ''} "
            f"({', '.join(dropped)}); --all-columns keeps them, --format json or parquet "
            "has every column",
            file=sys.stderr,
        )
    return frame.drop(columns=dropped)


def _emit(text: str, output: str | None) -> None:
    """`text` to the file `output`, or standard output."""
    if output is None:
        sys.stdout.write(text)
        return
    Path(output).write_text(text, encoding="utf-8")


def _write_parquet(frame: pd.DataFrame, output: str | None) -> int:
    """The results with proper dtypes as Parquet (JSON columns as their JSON text)."""
    import io

    from pcnbench.results import json_columns, typed_frame

    if output is None and sys.stdout.isatty():
        raise PcnbenchError("Parquet is binary: write it with --output FILE or redirect stdout")
    typed = typed_frame(frame)
    for name in json_columns(frame):  # one Parquet type per column: the text, not the objects
        typed[name] = frame[name].astype("string")
    try:
        buffer = io.BytesIO()
        typed.to_parquet(buffer, index=False)
    except ImportError as exc:
        raise PcnbenchError(
            f"--format parquet needs pyarrow (pip install pyarrow): {exc}"
        ) from None
    if output is None:
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        Path(output).write_bytes(buffer.getvalue())
    return EXIT_OK
