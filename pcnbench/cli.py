"""The `pcnbench` command: run, validate, plugins, results."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pcnbench
from pcnbench.errors import PcnbenchError, PluginError, SuiteError
from pcnbench.hookspecs import hookimpl
from pcnbench.labels import is_missing, plain_value

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

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


def _console(stderr: bool = False, wide: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if wide and not console.is_terminal and not os.environ.get("COLUMNS"):
        # piped output has no width; tables of results read better unwrapped
        console.width = 160
    return console


def _plugins() -> Any:
    """The plugins; one warning line on stderr per plugin that failed to load (it is skipped)."""
    from pcnbench.manager import load_plugins

    host = load_plugins()
    warning = host.failure_warning()
    if warning:  # said once; a suite naming what a failed plugin provides fails as unknown
        print(warning, file=sys.stderr)
    return host


def _load(path: str) -> tuple[Any, Any]:
    from pcnbench.suite import load_suite

    host = _plugins()
    return load_suite(path, host), host


def _print_plan(loaded: Any, cells: list, todo: list | None, out: Any, host: Any) -> None:
    todo_ids = {c.id for c in todo} if todo is not None else None
    plans = _plans(cells, host)
    count = f"{len(cells):,} cell{'s' if len(cells) != 1 else ''}"
    width = _table_width(out)
    head = f"suite '{loaded.name}' ({loaded.file}): {count}, {_epochs(cells, plans)}"
    out.file.writelines(f"{line}\n" for line in _wrapped(head, width))
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
    lines = [f"{line}\n" for line in _plan_lines(rows, width)]
    # why each cell trains what it does, once per method setting (the seeds share it)
    reasons: dict[str, str] = {}
    for cell in cells:
        plan = plans[cell.id]
        if plan is None:
            why = f"at least {cell.recipe.epochs:,} (recipe.epochs; the method plans no more)"
        else:
            why = plan.why or _number(plan.total)
        reasons.setdefault(setting[cell.id], why)
    if reasons:
        lines.append("epochs per cell, by method setting:\n")
        for label, why in reasons.items():
            lines.extend(f"{line}\n" for line in _wrapped(f"{label}: {why}", width, "  ", "    "))
    lines.extend(_coverage_lines(loaded, width))
    if lines:
        # Plain text written as is: rich inspects every character it prints, seconds on a
        # large matrix, and these lines hold no markup.
        out.file.writelines(lines)
        out.file.flush()
    for warning in _coverage_warnings(loaded):
        print(warning, file=sys.stderr, flush=True)


def _coverage_groups(loaded: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """Each model × method of the suite's coverage (`model, `), with its settings' accounts."""
    several = len({id(d) for d, *_ in loaded.coverage}) > 1
    groups: dict[tuple[int, int, str], tuple[str, list[tuple[Any, Any]]]] = {}
    for dataset, model, method, account in loaded.coverage:
        where = f"{model.label} on {dataset.label}, " if several else f"{model.label}, "
        key = (id(dataset), id(model), method.name)
        groups.setdefault(key, (where, []))[1].append((method, account))
    return list(groups.values())


def _share(account: Any) -> str:
    return f"{'' if account.exact else 'up to '}{account.fraction:.1%}"


def _coverage_lines(loaded: Any, width: int | None) -> list[str]:
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
            lines.extend(f"{line}\n" for line in _wrapped(text, width, "  ", "    "))
    return lines


def _coverage_warnings(loaded: Any) -> list[str]:
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


def _table_width(out: Any) -> int | None:
    """The columns a table may take on `out`: the terminal's or COLUMNS; None (any) in a pipe."""
    if out.is_terminal or os.environ.get("COLUMNS"):
        return int(out.width)
    return None


def _wrapped(text: str, width: int | None, first: str = "", then: str = "") -> list[str]:
    """`text` as lines within `width` (one line when None), words and paths kept whole."""
    import textwrap

    if width is None or len(first) + len(text) <= width:
        return [first + text]
    return textwrap.wrap(
        text,
        max(20, width),
        initial_indent=first,
        subsequent_indent=then,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _plan_lines(rows: list[tuple[str, str, str]], width: int | None) -> list[str]:
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
        wrapped = textwrap.wrap(
            f"{label}  {glued}",
            max(20, (width or 0) - len(head)),
            break_long_words=False,
            break_on_hyphens=False,
        )
        pad = " " * len(head)
        lines.extend(
            (head if n == 0 else pad) + part.replace("\0", " ") for n, part in enumerate(wrapped)
        )
    return lines


def _plans(cells: list, host: Any) -> dict[str, Any]:
    """Cell id → its method's EpochPlan (None where the method does not plan its epochs)."""
    plans: dict[str, Any] = {}
    by_setting: dict[tuple[int, int], Any] = {}  # a method setting and recipe plan once
    for cell in cells:
        key = (id(cell.method), id(cell.recipe))
        if key not in by_setting:
            method = host.methods.get(cell.method.name)
            by_setting[key] = method.plan_epochs(cell.method.params, cell.recipe)
        plans[cell.id] = by_setting[key]
    return plans


def _epoch_count(cell: Any, plans: dict[str, Any]) -> str:
    plan = plans[cell.id]
    if plan is None:
        return f"≥{cell.recipe.epochs:,} ep"
    return f"{_number(plan.total)} ep"


def _epochs(cells: list, plans: dict[str, Any]) -> str:
    """The epochs a list of cells trains, so that a typo like epochs: 1000000000 shows."""
    total = sum(plans[c.id].total if plans[c.id] is not None else c.recipe.epochs for c in cells)
    least = "at least " if any(plans[c.id] is None for c in cells) else ""
    return f"{least}{_number(total)} epochs planned"


def _projection(todo: list, loaded: Any, host: Any, device: str, share: bool) -> str:
    """The GPU-hours the cells still to run take here, from epoch times measured per grid point."""
    from pcnbench.execution import resolve_device
    from pcnbench.projection import grid_point, project_plan
    from pcnbench.timing import measure_epoch_seconds, train_size

    where = resolve_device(device)
    sizes: dict[str, int] = {}  # each dataset loaded once, for its size
    timings: dict[Any, Any] = {}
    for cell in todo:  # the first cell of each grid point stands for it
        point = grid_point(cell)
        if point not in timings:
            if point.dataset not in sizes:
                sizes[point.dataset] = train_size(cell, host)
            samples = sizes[point.dataset]
            timings[point] = measure_epoch_seconds(cell, host, where, samples=samples)

    def plan(cell: Any) -> Any:
        spe = timings[grid_point(cell)].steps_per_epoch
        return host.methods.get(cell.method.name).plan_epochs(cell.method.params, cell.recipe, spe)

    seconds = {point: t.seconds for point, t in timings.items()}
    projection = project_plan(
        todo, seconds, gpus=loaded.suite.resources.gpus, share=share, epochs_of=plan
    )
    unit = "GPU-hours" if where.startswith("cuda") else "hours"
    lines = [projection.summary().replace("GPU-hours", f"{unit} on {where}", 1)]
    lines.extend(
        f"  {point}: {t.seconds:,.1f} s per epoch ({t.steps_per_epoch:,} steps × "
        f"{1000 * t.step_s:,.1f} ms measured over {t.steps_timed} steps on random inputs)"
        for point, t in timings.items()
    )
    return "\n".join(lines)


def _on_cuda(device: str) -> bool:
    """Whether cells would run on a CUDA GPU here (planning for an absent one: no)."""
    from pcnbench.execution import resolve_device

    try:
        return resolve_device(device).startswith("cuda")
    except PcnbenchError:  # e.g. a suite for a GPU machine, planned on a laptop
        return False


def _number(value: float) -> str:
    """1,234 for a whole number, else 1,234.5 (up to 2 decimals)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a suite and print its expanded matrix."""
    loaded, host = _load(args.suite)
    _print_plan(loaded, loaded.cells, None, _console(), host)
    return EXIT_OK


def _fmt(value: Any, column: str) -> str:
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


def _point_keys(host: Any = None) -> dict[str, tuple[str, ...]]:
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


def _point(value: Any) -> str:
    return "" if is_missing(value) else plain_value(value)


def _table_columns(
    frame: Any, keys_of: dict[str, tuple[str, ...]], *, ids: bool, errors: bool
) -> list[Any]:
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
        columns.append(Column("seed", [_point(r.get("seed")) for r in records], "right", key=True))
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
        values = [_point(r.get(key)) if k else "" for r, k in zip(records, keyed, strict=True)]
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
                [_fmt(r.get(col), col) for r in records],
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


def _results_table(frame: Any, title: str, out: Any, columns: list[Any]) -> None:
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


_CONFIGURATION = (
    "suite",
    "dataset",
    "dataset_params",
    "model",
    "model_params",
    "method",
    "method_params",
)


def _grouped(frame: Any) -> Any:
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


def _summary(
    frame: Any, ids: set[str], out: Any, keys_of: dict[str, tuple[str, ...]] | None = None
) -> None:
    frame = _grouped(frame[frame["cell_id"].isin(ids)])
    columns = _table_columns(frame, keys_of or {}, ids=False, errors=False)
    title = (
        "results (params: count; MACs: per sample, measured by torch FlopCounter; reduced: "
        "share of the model's parameters in tensors the method reduced; "
        "time: training wall-clock, s)"
    )
    _results_table(frame, title, out, columns)


def _left_dense(frame: Any, out: Any) -> None:
    """For each method setting, the largest tensors it left dense beyond convention, and why."""
    from pcnbench.coverage import Reason
    from pcnbench.labels import row_parts, short_labels

    if "left_dense" not in frame.columns or frame.empty:
        return
    records = frame.to_dict("records")
    labels = short_labels([row_parts(r) for r in records], seed=False)
    routine = {Reason.BIAS, Reason.NORMALIZATION, Reason.EMBEDDING, Reason.TOKEN}
    said: dict[str, str] = {}
    for r in records:
        label = labels[r["cell_id"]]
        rows = r.get("left_dense")
        if label in said or is_missing(rows):
            continue
        rows = json.loads(rows) if isinstance(rows, str) else rows
        odd = [row for row in rows if row.get("reason") not in routine]
        if not odd:
            continue
        named = "; ".join(f"{o['tensor']} ({o['params']:,}): {o['reason']}" for o in odd[:3])
        more = f"; … {len(odd) - 3} more" if len(odd) > 3 else ""
        said[label] = f"{label}: {_fmt(r.get('coverage'), 'coverage')} reduced; {named}{more}"
    if said:
        width = _table_width(out)
        lines = ["left dense (the largest tensors each setting did not reduce, and why):"]
        for text in said.values():
            lines.extend(_wrapped(text, width, "  ", "    "))
        out.file.writelines(f"{line}\n" for line in lines)


def _reasons(frame: Any, ids: list[str], out: Any) -> None:
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


class _Named:
    """A rich Progress whose cell bars show short labels (the driver names cells in full)."""

    def __init__(self, progress: Any, names: dict[str, str]) -> None:
        self.progress, self.names = progress, names

    def add_task(self, description: str, **kwargs: Any) -> Any:
        """A bar named by the cell's short label."""
        return self.progress.add_task(self.names.get(description, description), **kwargs)

    def __getattr__(self, name: str) -> Any:  # update, advance, remove_task: as they are
        return getattr(self.progress, name)


class _CellLines:
    """Progress where there is no terminal (a pipe, a CI log): a plain line per cell started
    and finished, e.g. `[3/16] done   pcn keep=f0.0625 seed 0  acc 95.83%  12.3 s`.

    The driver moves it like a rich Progress (`add_task`, `update`, `advance`, `remove_task`);
    the finished lines come from the `on_cell_end` hook, which says the cell's status and
    results (register it with the plugin manager for the run).
    """

    def __init__(self, names: dict[str, str], write: Any = None) -> None:
        self.names = names  # full label → short label
        self.write = write or (lambda line: print(line, flush=True))
        self.total = len(names)
        self.started = self.finished = self.tasks = 0
        self.began: dict[str, float] = {}  # full label → when it started

    def _count(self, n: int) -> str:
        return f"[{n:>{len(str(self.total))}}/{self.total}]"

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        """The suite's task (its total counts the cells to run), or a cell starting: a line."""
        self.tasks += 1
        if description not in self.names:
            self.total = int(total or 0) or self.total
            return self.tasks
        self.started += 1
        self.began[description] = time.perf_counter()
        self.write(f"{self._count(self.started)} start  {self.names[description]}")
        return self.tasks

    def update(self, task: Any, **_: Any) -> None:
        """Steps within a cell: not printed."""

    def advance(self, task: Any, advance: float = 1) -> None:
        """A cell finished: its line comes from `on_cell_end`."""

    def remove_task(self, task: Any) -> None:
        """A cell's task ends: nothing to print."""

    @hookimpl
    def on_cell_end(
        self, cell: Any, status: str, results: list[dict[str, Any]], error: str | None
    ) -> None:
        """A line for the cell that ended: status, accuracy and wall time, or why it failed."""
        label = getattr(cell, "label", None)
        if label not in self.names:
            return
        self.finished += 1
        began = self.began.pop(label, None)
        said = f"{self._count(self.finished)} {status:<6} {self.names[label]}"
        accuracies = [r.get("accuracy") for r in results if not is_missing(r.get("accuracy"))]
        if accuracies:
            said += f"  acc {_fmt(accuracies[-1], 'accuracy')}"
            if len(results) > 1:
                said += f" (last of {len(results)} results)"
        if began is not None:
            said += f"  {time.perf_counter() - began:.1f} s"
        if error and status != "done":
            from pcnbench.labels import error_reason

            said += f"  {error_reason(error, status)}"
        self.write(said)


def _progress(args: argparse.Namespace, cells: list, host: Any, out: Any) -> Any:
    """How the run shows its progress: rich bars on a terminal, plain lines off one, or none."""
    from contextlib import contextmanager

    from pcnbench.labels import cell_parts, short_labels

    short = short_labels([cell_parts(c) for c in cells])
    names = {c.label: short[c.id] for c in cells}

    @contextmanager
    def bars() -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column as RichColumn

        with Progress(
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=RichColumn(no_wrap=True, overflow="ellipsis", max_width=36),
            ),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            yield _Named(progress, names)

    @contextmanager
    def lines() -> Any:
        reporter = _CellLines(names)
        name = "pcnbench-cli-lines"
        host.pm.register(reporter, name=name)
        try:
            yield reporter
        finally:
            host.pm.unregister(name=name)

    @contextmanager
    def nothing() -> Any:
        yield None

    err = _console(stderr=True)
    if args.quiet:
        return nothing()
    return bars() if out.is_terminal and err.is_terminal else lines()


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or with --dry-run, plan) a suite."""
    from pcnbench.orchestration import prepare, run_cells, selected_cells

    host = _plugins()
    loaded, runner = prepare(
        args.suite,
        host,
        output=args.output,
        device=args.device,
        jobs=args.jobs,
        executor=args.executor,
        address=args.address,
        threads=args.threads,
        meter=not args.no_meter,
        share=not args.no_share,
        argv=sys.argv,
        # said once, as the run starts; the run's environment records it too
        warn=lambda message: print(message, file=sys.stderr),
        warm=not args.dry_run,
    )
    from pcnbench.store import Store

    out = _console()
    if args.dry_run:
        cells, todo = runner.plan(args.only, args.force)
        _print_plan(loaded, cells, todo, out, host)
        width = _table_width(out)
        said = [
            f"{len(todo)} to run, {len(cells) - len(todo)} already done → {runner.output}; "
            f"{_epochs(todo, _plans(todo, host))} (before trunk sharing)"
        ]
        if todo and (args.project or _on_cuda(args.device or loaded.suite.device)):
            text = _projection(
                todo, loaded, host, args.device or loaded.suite.device, not args.no_share
            )
            said.extend(text.splitlines())
        for line in said:
            indent = line[: len(line) - len(line.lstrip())]
            out.file.writelines(f"{part}\n" for part in _wrapped(line, width, "", indent + "    "))
        out.file.flush()
        return EXIT_OK
    selected = selected_cells(loaded, args.only)
    with _progress(args, selected, host, out) as progress:
        runner.progress = progress
        summary = run_cells(
            loaded, runner, only=args.only, force=args.force, mix_suites=args.mix_suites
        )
    store = Store(runner.output / "results.db", readonly=True)
    try:
        frame = store.results_frame()
    finally:
        store.close()
    _summary(frame, set(summary.selected), _console(wide=True), _point_keys(host))
    index = runner.output / "index.html"
    reported = True
    if not summary.done and not summary.failed and index.is_file():
        out.print(f"report: {index} (nothing new to report)", markup=False)
    elif not args.no_report:
        reported = _report(runner.output, host, out, formats=args.formats)
    out.print(
        f"{len(summary.done)} trained, {summary.skipped} already done, "
        f"{len(summary.failed)} failed → {runner.output / 'results.db'}"
    )
    if summary.interrupted:
        out.print("interrupted: finished cells are stored; run the same command to continue")
        return EXIT_INTERRUPTED
    if summary.failed:
        _reasons(frame, summary.failed, _console(wide=True))
        shown = summary.failed if len(summary.failed) <= 8 else [*summary.failed[:6], "…"]
        count = f"; {len(summary.failed)} in all" if len(summary.failed) > 8 else ""
        out.print(f"failed cells: {', '.join(shown)} (see `pcnbench results`{count})", markup=False)
        return EXIT_FAILED_CELLS
    return EXIT_OK if reported else EXIT_USAGE  # an incomplete report is not a success


FIGURE_FORMATS = ("svg", "pdf", "png")


def _jobs(text: str) -> int | str:
    """--jobs: a whole number ≥ 1, or "auto"."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1 or 'auto' (got {text!r})")
    return value


def _add_formats(parser: argparse.ArgumentParser) -> None:
    """The --formats option of the commands that build a report."""
    parser.add_argument(
        "--formats",
        type=_formats,
        default=("svg",),
        metavar="LIST",
        help="figure files to write: svg (default, always), pdf, png, comma-separated "
        "(each extra format adds seconds per figure)",
    )


def _formats(text: str) -> tuple[str, ...]:
    """--formats: comma-separated figure formats; SVG is always written (the page inlines it)."""
    asked = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in asked if f not in FIGURE_FORMATS]
    if unknown or not asked:
        raise argparse.ArgumentTypeError(
            f"expected some of {', '.join(FIGURE_FORMATS)} separated by commas (got {text!r})"
        )
    return tuple(dict.fromkeys(("svg", *asked)))


def _report(
    output: Path,
    host: Any,
    out: Any,
    target: Path | None = None,
    formats: tuple[str, ...] = ("svg",),
) -> bool:
    """Build the report of `output` (into `target`); False, said on stderr, if incomplete.

    The results stay stored whatever happens to the report.
    """
    from pcnbench.orchestration import build_report

    error = build_report(output, host, target, formats)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return False
    out.print(f"report: {(target or output) / 'index.html'}", markup=False)
    return True


def _results_dir(given: str) -> Path:
    """The output folder a command reads (given itself or its results.db); error if none."""
    output = Path(given)
    if output.is_file():
        output = output.parent
    if not (output / "results.db").is_file():
        raise PcnbenchError(f"no results database at {output / 'results.db'} (run a suite first)")
    return output


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report from a results database."""
    output = _results_dir(args.dir)
    target = Path(args.output) if args.output else None
    ok = _report(output, _plugins(), _console(), target, args.formats)
    return EXIT_OK if ok else EXIT_USAGE


def cmd_plugins(args: argparse.Namespace) -> int:
    """List loaded plugins and what each registers, or describe the plugin NAME."""
    from rich.table import Table
    from rich.text import Text

    from pcnbench.manager import load_plugins

    host = load_plugins(strict=False)
    if args.name:
        from pcnbench.describe import describe_plugin

        print(describe_plugin(host, args.name))  # PcnbenchError with suggestions if unknown
        warning = host.failure_warning()
        if warning:
            print(warning, file=sys.stderr)
        return EXIT_OK
    table = Table(title="pcnbench plugins (entry-point group 'pcnbench')")
    for header in ("plugin", "distribution", "version", "registers"):
        table.add_column(header)
    for info in host.infos.values():
        parts = []
        for kind, got in info.registers.items():
            shown = ", ".join(got) if len(got) <= 8 else ", ".join(got[:6])
            if len(got) > 8:
                shown += f", … ({len(got)} in all)"
            parts.append(f"{kind}: {shown}")
        registers = f"[failed] {info.error}" if info.error else "; ".join(parts)
        table.add_row(*(Text(c) for c in (info.name, info.distribution, info.version, registers)))
    _console().print(table)
    warning = host.failure_warning()
    if warning:  # a broken environment: exit 2 (1 is for cells that ran and failed)
        print(warning, file=sys.stderr)
    return EXIT_USAGE if warning else EXIT_OK


def _markdown(frame: Any) -> str:
    def cell(v: Any) -> str:
        if is_missing(v):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


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
        _emit(_markdown(_grouped(frame)) + "\n", args.output)
    else:
        out = _console(wide=True)
        frame = _grouped(frame)
        columns = _table_columns(frame, _point_keys(), ids=True, errors=True)
        title = (
            f"results in {args.dir} (MACs: per sample; time: training wall-clock, s; "
            "all columns: --format csv or json)"
        )
        _results_table(frame, title, out, columns)
        _left_dense(frame, out)
        failed = frame[frame["status"] != "done"]["cell_id"].unique().tolist()
        if failed:
            _reasons(frame, failed, out)
    return EXIT_OK


def _without_large_json(frame: Any) -> Any:
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


def _write_parquet(frame: Any, output: str | None) -> int:
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


def cmd_env(args: argparse.Namespace) -> int:
    """Print devices, versions, and what each meter can measure here (or why not)."""
    from rich.table import Table
    from rich.text import Text

    from pcnbench.manager import load_plugins
    from pcnbench.provenance import environment

    out = _console(wide=True)
    env = environment()
    out.print(f"pcnbench {env['pcnbench']}, Python {env['python']}, torch {env['torch']}")
    gpus = ", ".join(env["gpus"]) or "none"
    out.print(f"CUDA available: {env['cuda_available']} (CUDA {env['cuda']}); GPUs: {gpus}")
    out.print(f"CPU: {env['cpu']}, {env['cpu_count']} cores; torch threads {env['torch_threads']}")
    host = load_plugins(strict=False)
    table = Table(title="meters (energy: measured or unmetered; estimates labelled)")
    for header in ("meter", "plugin", "available", "method", "detail"):
        table.add_column(header)
    for name in host.meters.names():
        try:
            probe = host.meters.get(name).probe()
            row = (name, host.meters.plugin_of(name), "yes" if probe.available else "no")
            row += (probe.method, probe.detail)
        except Exception as exc:
            row = (name, host.meters.plugin_of(name), "no", "error", f"{type(exc).__name__}: {exc}")
        table.add_row(*(Text(str(c)) for c in row))
    out.print(table)
    out.print(
        "Time: wall and process-CPU seconds per phase, device synchronized (always measured). "
        "Latency/throughput: measured per result on the training device.",
        soft_wrap=False,  # sentences wrap at the terminal's width
    )
    for name in host.executors.names():
        try:
            said = host.executors.get(name).probe()
        except Exception as exc:
            said = f"probe failed: {type(exc).__name__}: {exc}"
        line = f"executor {name} ({host.executors.plugin_of(name)}): {said}"
        out.print(line, markup=False, soft_wrap=False)
    return EXIT_OK


def cmd_claims(args: argparse.Namespace) -> int:
    """Judge the suite's claims from its stored results; exit 1 when one is refuted."""
    from pcnbench.claims import exit_code, format_claims
    from pcnbench.report import load_report_data

    output = _results_dir(args.dir)
    data = load_report_data(output, _plugins())
    # wrapped to the terminal (or to COLUMNS); written to a file or a pipe, lines stay whole
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 0
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else width
    sys.stdout.write(format_claims(data.claims, f"{data.suite} ({output})", width) + "\n")
    return exit_code(data.claims)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pcnbench", description="Benchmark neural-network parameter reduction methods."
    )
    parser.add_argument("--version", action="version", version=f"pcnbench {pcnbench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite (skips cells already done)")
    run.add_argument("suite", help="suite YAML file")
    run.add_argument("--dry-run", action="store_true", help="print the cells, train nothing")
    run.add_argument("--force", action="store_true", help="retrain cells already done")
    run.add_argument("--only", metavar="PATTERN", help="only cells whose id or label matches")
    run.add_argument("--output", metavar="DIR", help="results directory (default reports/<name>)")
    run.add_argument(
        "--mix-suites",
        action="store_true",
        help="allow writing into an output folder that holds another suite's results",
    )
    run.add_argument("--device", help="override the suite's device (auto, cpu, cuda, cuda:N)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--no-meter", action="store_true", help="no energy/memory meters, no latency measurement"
    )
    run.add_argument("--no-report", action="store_true", help="do not build the HTML report")
    run.add_argument(
        "--project",
        action="store_true",
        help="with --dry-run: measure each grid point's epoch time here and project the hours "
        "the plan takes (done anyway on a GPU)",
    )
    _add_formats(run)
    run.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N|auto",
        help="local executor: run cells in N worker processes, or 'auto': one per core and"
        " trunk group (default: the suite's executor.jobs)",
    )
    run.add_argument(
        "--executor",
        metavar="NAME",
        help="where cells run: local, ray or a plugin's executor (default: the suite's executor)",
    )
    run.add_argument(
        "--address",
        metavar="ADDR",
        help="ray: join this cluster (e.g. auto, or ray://head:10001) instead of starting Ray",
    )
    run.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads per cell process (default: OMP_NUM_THREADS, else the cores "
        "this process may use, divided among --jobs workers)",
    )
    run.add_argument(
        "--no-share",
        action="store_true",
        help="train every cell from scratch (no shared dense trunk under <output>/trunk)",
    )
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a suite and print its expanded matrix")
    val.add_argument("suite")
    val.set_defaults(func=cmd_validate)

    plug = sub.add_parser(
        "plugins",
        aliases=["info"],
        help="list loaded plugins and what they register; NAME: one plugin's parameters",
    )
    plug.add_argument(
        "name", nargs="?", help="a method, model, dataset, ...: its kind, origin and parameters"
    )
    plug.set_defaults(func=cmd_plugins)

    rep = sub.add_parser("report", help="build the HTML report, tables and figures of a run")
    rep.add_argument("dir", help="a suite's output directory (or its results.db)")
    _add_formats(rep)
    rep.add_argument(
        "--output",
        metavar="DIR",
        help="write the report here (default: beside results.db; e.g. when that is read-only)",
    )
    rep.set_defaults(func=cmd_report)

    env = sub.add_parser("env", help="what this machine can meter, and how")
    env.set_defaults(func=cmd_env)

    res = sub.add_parser("results", help="print stored results")
    res.add_argument("dir", help="a suite's output directory (or its results.db)")
    res.add_argument(
        "--format", choices=["table", "csv", "json", "markdown", "parquet"], default="table"
    )
    res.add_argument(
        "--all-columns",
        action="store_true",
        help="csv: keep the large JSON columns (layer lists, spectra) too",
    )
    res.add_argument("--output", metavar="FILE", help="write there instead of standard output")
    res.set_defaults(func=cmd_results)

    claims = sub.add_parser(
        "claims", help="judge the suite's claims from its results (exit 1 when one is refuted)"
    )
    claims.add_argument("dir", help="a suite's output directory (or its results.db)")
    claims.set_defaults(func=cmd_claims)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pcnbench` console script."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a first try with no command: the commands and what each does
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SuiteError, PluginError) as exc:
        print(f"error: {exc}" if isinstance(exc, PluginError) else str(exc), file=sys.stderr)
        return EXIT_USAGE
    except PcnbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # the environment refused something no check foresaw: say what and where, not how
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def console() -> None:
    """The `pcnbench` console script: run `main`, then exit with its code."""
    exit_now(main(sys.argv[1:]))


def exit_now(code: int) -> None:
    """End the process with `code` without tearing its interpreter down.

    With torch loaded (and its compiler, which training imports) the teardown takes 1–2 s,
    after everything is written: the shell, a pipe (`| tee`) or CI waits for nothing. What a
    normal exit does that matters still happens: the exit handlers run (plugins' own, logging's,
    multiprocessing's removal of its temporary files), then stdout and stderr are flushed. A
    process with another non-daemon thread still running exits normally, which waits for it.
    """
    import atexit
    import contextlib
    import threading

    main_thread = threading.main_thread()
    others = [t for t in threading.enumerate() if t is not main_thread and not t.daemon]
    if any(t.is_alive() for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`| head`): nothing more can be said
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
