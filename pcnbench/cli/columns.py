"""The columns of a table of results, and how they give way in a narrow terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcnbench.cli.formatting import format_point, format_value

if TYPE_CHECKING:
    import pandas as pd

    from pcnbench.labels import Column
    from pcnbench.manager import PluginHost

SUMMARY_COLUMNS = [
    ("label", "cell"),
    ("status", "status"),
    ("params", "params"),
    ("macs", "MACs"),
    ("coverage", "reduced"),
    ("accuracy", "test acc"),
    ("train_time_s", "train s"),
    ("epochs_trained", "epochs"),
]

# How the tables of results give way in a narrow terminal (`pcnbench.labels.Column`): shorter
# headers first, then short cell ids and errors without their exception's name, then these
# columns go, lowest rank first, then the error is cut. What tells rows apart (cell, seed, a
# method's point keys such as IMP's level) always stays.
_SHORT_HEADERS = {"test acc": "acc", "train s": "time", "epochs": "ep"}
_DROP_RANK = {
    "epochs_trained": 0,
    "train_time_s": 1,
    "cell_id": 2,
    "coverage": 3,
    "macs": 4,
    "status": 5,
}


def point_keys(host: PluginHost | None = None) -> dict[str, tuple[str, ...]]:
    """Method → the result columns that tell its cell's rows apart (`Method.point_keys`)."""
    if host is None:
        from pcnbench.manager import load_plugins

        try:  # the table still prints without them (a "result" column stands in)
            host = load_plugins(strict=False)
        except Exception:
            return {}
    keys = {}
    for name in host.methods.names():
        try:
            keys[name] = tuple(host.methods.get(name).point_keys)
        except Exception:
            continue
    return keys


def table_columns(
    frame: pd.DataFrame, keys_of: dict[str, tuple[str, ...]], *, ids: bool, errors: bool
) -> list[Column]:
    """The columns of a table of results: what tells rows apart first, then the figures."""
    from pcnbench.labels import Column, bare_reason, error_reason, row_parts, short_labels

    records = frame.to_dict("records")
    cells = {r["cell_id"]: r for r in records}
    labels = short_labels([row_parts(r) for r in cells.values()], seed=False)
    columns = []
    if ids:
        values = [str(r["cell_id"]) for r in records]
        columns.append(
            Column("id", values, short_values=[v[:8] for v in values], drop=_DROP_RANK["cell_id"])
        )
    columns.append(Column("cell", [labels[r["cell_id"]] for r in records], key=True))
    if len({r.get("seed") for r in cells.values()}) > 1:
        seeds = [format_point(r.get("seed")) for r in records]
        columns.append(Column("seed", seeds, "right", key=True))
    rows_of: dict[str, int] = {}
    for r in records:
        rows_of[r["cell_id"]] = rows_of.get(r["cell_id"], 0) + 1
    points: list[str] = []
    for method in dict.fromkeys(r["method"] for r in records):
        keys = [k for k in keys_of.get(method, ()) if k in frame.columns]
        several = any(rows_of[r["cell_id"]] > 1 for r in records if r["method"] == method)
        points.extend(keys or (["result"] if several and "result" in frame.columns else []))
    for key in dict.fromkeys(points):
        # "result" (a row's index in its cell) only for cells of methods that name no keys
        keyed = [key != "result" or not keys_of.get(r["method"]) for r in records]
        values = [
            format_point(r.get(key)) if k else "" for r, k in zip(records, keyed, strict=True)
        ]
        columns.append(Column(key, values, "right", key=True))
    if any(r.get("status") != "done" for r in records):
        # beside an error column (empty for cells done) the status can go in a narrow terminal
        dropped = _DROP_RANK["status"] if errors else None
        columns.append(Column("status", [str(r.get("status")) for r in records], drop=dropped))
    for col, header in SUMMARY_COLUMNS:
        if col in ("label", "status"):
            continue
        columns.append(
            Column(
                header,
                [format_value(r.get(col), col) for r in records],
                "right",
                short_header=_SHORT_HEADERS.get(header),
                drop=_DROP_RANK.get(col),
            )
        )
    if errors and any(r.get("status") != "done" for r in records):
        reasons = [
            "" if r.get("status") == "done" else error_reason(r.get("error"), str(r.get("status")))
            for r in records
        ]
        columns.append(
            Column(
                "error",
                reasons,
                short_values=[bare_reason(r) for r in reasons],
                min_width=20,
                max_width=60,
            )
        )
    return columns
