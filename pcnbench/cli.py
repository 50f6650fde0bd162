"""The `pcnbench` command: run, validate, plugins, results."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pcnbench
from pcnbench.errors import PcnbenchError, PluginError, SuiteError

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

SUMMARY_COLUMNS = [
    ("label", "cell"),
    ("status", "status"),
    ("params", "params"),
    ("macs", "MACs"),
    ("accuracy", "test acc"),
    ("train_time_s", "train s"),
    ("epochs_trained", "epochs"),
]


def _console(stderr: bool = False, wide: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if wide and not console.is_terminal:
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
    out.print(
        f"suite '{loaded.name}' ({loaded.file}): {len(cells):,} cells, {_epochs(cells, plans)}",
        markup=False,
    )
    lines = []
    for cell in cells:
        mark = ""
        if todo_ids is not None:
            mark = "  [run]" if cell.id in todo_ids else "  [done, skip]"
        lines.append(f"{cell.id}  {cell.label}  {_epoch_count(cell, plans)}{mark}\n")
    # why each cell trains what it does, once per method setting (the seeds share it)
    reasons: dict[str, str] = {}
    for cell in cells:
        plan = plans[cell.id]
        why = plan.why if plan is not None and plan.why else None
        if why is None and plan is None:
            why = (
                f"at least {cell.recipe.epochs:,} (recipe.epochs; {cell.method.name} plans no more)"
            )
        reasons.setdefault(_method_label(cell), why or f"{plan.total:g}")
    if reasons:
        lines.append("epochs per cell, by method setting:\n")
        lines.extend(f"  {label}: {why}\n" for label, why in reasons.items())
    if lines:
        # Plain text written as is: rich inspects every character it prints, seconds on a
        # large matrix, and these lines hold no markup.
        out.file.writelines(lines)
        out.file.flush()


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


def _method_label(cell: Any) -> str:
    return cell.label.split(" · ")[2]


def _epoch_count(cell: Any, plans: dict[str, Any]) -> str:
    plan = plans[cell.id]
    if plan is None:
        return f"≥{cell.recipe.epochs:,} ep"
    return f"{_number(plan.total)} ep"


def _epochs(cells: list, plans: dict[str, Any]) -> str:
    """The epochs a list of cells trains, so that a typo like epochs: 1000000000 shows."""
    total = sum(plans[c.id].total if plans[c.id] is not None else c.recipe.epochs for c in cells)
    least = "at least " if any(plans[c.id] is None for c in cells) else ""
    return f"{least}{_number(total)} epochs planned (before trunk sharing)"


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


def _missing(value: Any) -> bool:
    """Whether a results cell holds nothing: None, NaN, or pandas' NA (of an Int64 column)."""
    from pandas import NA

    return value is None or value is NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, column: str) -> str:
    if _missing(value):
        return "—"
    if column in ("params", "macs", "dense_params", "dense_macs"):
        return f"{int(value):,}"
    if column == "accuracy":
        return f"{100 * float(value):.2f}%"
    if column in ("train_time_s", "epochs_trained"):
        return f"{float(value):.1f}"
    return str(value)


def _summary(frame: Any, ids: set[str], out: Any) -> None:
    from rich.table import Table

    frame = frame[frame["cell_id"].isin(ids)]
    table = Table(title="results (params: count; MACs: per sample, measured by torch FlopCounter)")
    for _, header in SUMMARY_COLUMNS:
        table.add_column(header, justify="left" if header in ("cell", "status") else "right")
    for _, row in frame.iterrows():
        table.add_row(*(_fmt(row.get(col), col) for col, _ in SUMMARY_COLUMNS))
    out.print(table)


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or with --dry-run, plan) a suite."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from pcnbench.cells import select
    from pcnbench.runner import Runner
    from pcnbench.store import Store

    loaded, host = _load(args.suite)
    out = _console()
    runner = Runner(
        loaded,
        host,
        output=args.output,
        device=args.device,
        argv=sys.argv,
        metering=False if args.no_meter else None,
        share=not args.no_share,
        jobs=args.jobs,
        executor=args.executor,
        address=args.address,
        threads=args.threads,
        # said once, as the run starts; the run's environment records it too
        warn=lambda message: print(message, file=sys.stderr),
    )
    if args.dry_run:
        cells, todo = runner.plan(args.only, args.force)
        _print_plan(loaded, cells, todo, out, host)
        out.print(
            f"{len(todo)} to run, {len(cells) - len(todo)} already done → {runner.output}; "
            f"{_epochs(todo, _plans(todo, host))}",
            markup=False,
        )
        return EXIT_OK
    if not select(loaded.cells, args.only):
        raise SuiteError(f"--only {args.only!r} matches no cell", file=loaded.file)
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        disable=args.quiet,
    ) as progress:
        runner.progress = progress
        summary = runner.run(only=args.only, force=args.force, mix_suites=args.mix_suites)
    store = Store(runner.output / "results.db", readonly=True)
    _summary(store.results_frame(), set(summary.selected), _console(wide=True))
    store.close()
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
        out.print(f"failed cells: {', '.join(summary.failed)} (see `pcnbench results`)")
        return EXIT_FAILED_CELLS
    return EXIT_OK if reported else EXIT_USAGE  # an incomplete report is not a success


FIGURE_FORMATS = ("svg", "pdf", "png")


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
    from pcnbench.report import ReportError, build_report

    try:
        build_report(output, host, target, figure_formats=formats)
    except ReportError as exc:
        print(f"error: report incomplete: {exc}", file=sys.stderr)
        return False
    except PcnbenchError as exc:  # a full disk, a read-only folder, a damaged database
        print(f"error: {exc}", file=sys.stderr)
        return False
    out.print(f"report: {(target or output) / 'index.html'}", markup=False)
    return True


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report from a results database."""
    output = Path(args.dir)
    if output.is_file():
        output = output.parent
    if not (output / "results.db").is_file():
        raise PcnbenchError(f"no results database at {output / 'results.db'} (run a suite first)")
    target = Path(args.output) if args.output else None
    ok = _report(output, _plugins(), _console(), target, args.formats)
    return EXIT_OK if ok else EXIT_USAGE


def cmd_plugins(args: argparse.Namespace) -> int:
    """List loaded plugins and what each registers."""
    from rich.table import Table
    from rich.text import Text

    from pcnbench.manager import load_plugins

    host = load_plugins(strict=False)
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
        if _missing(v):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def cmd_results(args: argparse.Namespace) -> int:
    """Print stored results, one row per result."""
    from pcnbench.store import Store

    store = Store.open_existing(args.dir)  # read-only: creates and changes nothing
    try:
        frame = store.results_frame()
    finally:
        store.close()
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        records = json.loads(frame.to_json(orient="records"))
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(_markdown(frame) + "\n")
    else:
        from rich.table import Table

        table = Table(title=f"results in {args.dir} (all columns: --format csv or json)")
        shown = ["cell_id", *(col for col, _ in SUMMARY_COLUMNS)]
        for col in shown:
            table.add_column(col, overflow="fold")
        for _, row in frame.iterrows():
            table.add_row(*(_fmt(row.get(c), c) for c in shown))
        _console(wide=True).print(table)
        failed = frame[frame["status"] != "done"]
        for _, row in failed.iterrows():
            last = (row["error"] or "").strip().splitlines()[-1:] or [""]
            _console().print(f"{row['cell_id']} {row['status']}: {last[0]}", markup=False)
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
        "Latency/throughput: measured per result on the training device."
    )
    for name in host.executors.names():
        try:
            said = host.executors.get(name).probe()
        except Exception as exc:
            said = f"probe failed: {type(exc).__name__}: {exc}"
        out.print(f"executor {name} ({host.executors.plugin_of(name)}): {said}", markup=False)
    return EXIT_OK


def cmd_claims(args: argparse.Namespace) -> int:
    """Judge the suite's claims from its stored results; exit 1 when one is refuted."""
    from pcnbench.claims import exit_code, format_claims
    from pcnbench.report import load_report_data

    output = Path(args.dir)
    if output.is_file():
        output = output.parent
    if not (output / "results.db").is_file():
        raise PcnbenchError(f"no results database at {output / 'results.db'} (run a suite first)")
    data = load_report_data(output, _plugins())
    sys.stdout.write(format_claims(data.claims, f"{data.suite} ({output})"))
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
        "--formats",
        type=_formats,
        default=("svg",),
        metavar="LIST",
        help="figure files to write: svg (default, always), pdf, png, comma-separated "
        "(each extra format adds seconds per figure)",
    )
    run.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="local executor: run cells in N worker processes (default: the suite's executor.jobs)",
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

    plug = sub.add_parser("plugins", help="list loaded plugins and what they register")
    plug.set_defaults(func=cmd_plugins)

    rep = sub.add_parser("report", help="build the HTML report, tables and figures of a run")
    rep.add_argument("dir", help="a suite's output directory (or its results.db)")
    rep.add_argument(
        "--formats",
        type=_formats,
        default=("svg",),
        metavar="LIST",
        help="figure files to write: svg (default, always), pdf, png, comma-separated "
        "(each extra format adds seconds per figure)",
    )
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
    res.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    res.set_defaults(func=cmd_results)

    claims = sub.add_parser(
        "claims", help="judge the suite's claims from its results (exit 1 when one is refuted)"
    )
    claims.add_argument("dir", help="a suite's output directory (or its results.db)")
    claims.set_defaults(func=cmd_claims)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pcnbench` console script."""
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
