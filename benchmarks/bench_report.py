"""Wall time of `pcnbench report` on a quickstart-sized results database: median of 3 runs.

    python benchmarks/bench_report.py [OUTPUT_DIR] [--formats svg,pdf,png] [--repeats 3]

With OUTPUT_DIR (a finished run's folder, e.g. `pcnbench run suites/quickstart.yaml --output
/tmp/qs`), its results are reported; without it, the quickstart suite is run once (about two
minutes on 2 CPU cores, `--no-report`) into a temporary folder first. Each run is a fresh
`pcnbench report` process (interpreter start and imports included, as a user sees it) writing
to its own temporary folder, so the results folder is only read. The process's CPU time
(user + system) is printed beside the wall time: on a busy machine it is the steadier number,
and on an idle one the two agree (the report draws on one core). `--formats` asks the figures
reporter for PDF and PNG copies as well (through `PCNBENCH_BENCH_FORMATS`, read by this script's
child only).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "suites" / "quickstart.yaml"

# The child: the `pcnbench report` command, with the figures reporter's formats set first.
CHILD = """
import os, sys
from pcnbench import cli, manager
formats = os.environ.get("PCNBENCH_BENCH_FORMATS")
if formats:
    load = manager.load_plugins
    def load_with_formats(*args, **kwargs):
        host = load(*args, **kwargs)
        host.reporters.get("figures").formats = tuple(formats.split(","))
        return host
    manager.load_plugins = load_with_formats
sys.exit(cli.main(sys.argv[1:]))
"""


def quickstart_results(folder: Path) -> Path:
    """Run the quickstart suite into `folder` (no report) and return it."""
    command = ["pcnbench", "run", str(QUICKSTART), "--output", str(folder), "--no-report"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return folder


def time_report(results: Path, formats: str | None) -> tuple[float, float]:
    """One `pcnbench report` process on `results`: (wall seconds, CPU seconds)."""
    env = dict(os.environ)
    if formats:
        env["PCNBENCH_BENCH_FORMATS"] = formats
    with tempfile.TemporaryDirectory(prefix="bench-report-") as target:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", CHILD, "report", str(results), "--output", target],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    """Print the median wall and CPU time of `pcnbench report` over `--repeats` runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", help="a finished run's folder (default: run one)")
    parser.add_argument("--formats", help="figure formats, e.g. svg,pdf,png (default: svg)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-report-results-") as scratch:
        if args.output:
            results = Path(args.output)
        else:
            print(f"running {QUICKSTART.name} once (no report) ...", flush=True)
            results = quickstart_results(Path(scratch) / "quickstart")
        runs = [time_report(results, args.formats) for _ in range(args.repeats)]
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    print(
        f"pcnbench report {results} (figures: {args.formats or 'default'}): "
        f"median of {len(runs)}: {statistics.median(walls):.2f} s wall, "
        f"{statistics.median(cpus):.2f} s CPU (user + system); "
        f"wall runs: {', '.join(f'{w:.2f}' for w in walls)} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
