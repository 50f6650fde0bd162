"""The arguments of every `pcnbench` command; each command's `func` is its `cmd_<name>`."""

from __future__ import annotations

import argparse

import pcnbench
from pcnbench.cli.commands import claims, env, plugins, report, results, run, validate

FIGURE_FORMATS = ("svg", "pdf", "png")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pcnbench", description="Benchmark neural-network parameter reduction methods."
    )
    parser.add_argument("--version", action="version", version=f"pcnbench {pcnbench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)

    val = sub.add_parser("validate", help="check a suite and print its expanded matrix")
    val.add_argument("suite")
    val.set_defaults(func=validate.cmd_validate)

    plug = sub.add_parser(
        "plugins",
        aliases=["info"],
        help="list loaded plugins and what they register; NAME: one plugin's parameters",
    )
    plug.add_argument(
        "name", nargs="?", help="a method, model, dataset, ...: its kind, origin and parameters"
    )
    plug.set_defaults(func=plugins.cmd_plugins)

    rep = sub.add_parser("report", help="build the HTML report, tables and figures of a run")
    rep.add_argument("dir", help="a suite's output directory (or its results.db)")
    _add_formats(rep)
    rep.add_argument(
        "--output",
        metavar="DIR",
        help="write the report here (default: beside results.db; e.g. when that is read-only)",
    )
    rep.set_defaults(func=report.cmd_report)

    machine = sub.add_parser("env", help="what this machine can meter, and how")
    machine.set_defaults(func=env.cmd_env)

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
    res.set_defaults(func=results.cmd_results)

    judge = sub.add_parser(
        "claims", help="judge the suite's claims from its results (exit 1 when one is refuted)"
    )
    judge.add_argument("dir", help="a suite's output directory (or its results.db)")
    judge.set_defaults(func=claims.cmd_claims)
    return parser


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `run` command and its options."""
    ran = sub.add_parser("run", help="run a suite (skips cells already done)")
    ran.add_argument("suite", help="suite YAML file")
    ran.add_argument("--dry-run", action="store_true", help="print the cells, train nothing")
    ran.add_argument("--force", action="store_true", help="retrain cells already done")
    ran.add_argument("--only", metavar="PATTERN", help="only cells whose id or label matches")
    ran.add_argument("--output", metavar="DIR", help="results directory (default reports/<name>)")
    ran.add_argument(
        "--mix-suites",
        action="store_true",
        help="allow writing into an output folder that holds another suite's results",
    )
    ran.add_argument("--device", help="override the suite's device (auto, cpu, cuda, cuda:N)")
    ran.add_argument("--quiet", action="store_true", help="no progress bars")
    ran.add_argument(
        "--no-meter", action="store_true", help="no energy/memory meters, no latency measurement"
    )
    ran.add_argument("--no-report", action="store_true", help="do not build the HTML report")
    ran.add_argument(
        "--project",
        action="store_true",
        help="with --dry-run: measure each grid point's epoch time here and project the hours "
        "the plan takes (done anyway on a GPU)",
    )
    _add_formats(ran)
    ran.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N|auto",
        help="local executor: run cells in N worker processes, or 'auto': one per core and"
        " trunk group (default: the suite's executor.jobs)",
    )
    ran.add_argument(
        "--executor",
        metavar="NAME",
        help="where cells run: local, ray or a plugin's executor (default: the suite's executor)",
    )
    ran.add_argument(
        "--address",
        metavar="ADDR",
        help="ray: join this cluster (e.g. auto, or ray://head:10001) instead of starting Ray",
    )
    ran.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads per cell process (default: OMP_NUM_THREADS, else the cores "
        "this process may use, divided among --jobs workers)",
    )
    ran.add_argument(
        "--no-share",
        action="store_true",
        help="train every cell from scratch (no shared dense trunk under <output>/trunk)",
    )
    ran.set_defaults(func=run.cmd_run)


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
