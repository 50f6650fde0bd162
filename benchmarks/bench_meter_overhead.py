"""Meter overhead: wall time of a fresh quickstart run with metering on against --no-meter.

Run: python benchmarks/bench_meter_overhead.py [--repeats N] [--suite FILE] [--threads T]
Runs alternate (on, off, on, off, ...) so drift in machine load hits both alike; prints the
median of each and the ratio on/off. Target: ≤ 1.02. `--threads 1` (OMP_NUM_THREADS=1) takes
OpenMP's spinning threads out of the comparison, which on a small shared VM varies run to run
by more than the overhead being measured.
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


def run_once(suite: str, metered: bool, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh run of the suite."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "pcnbench.cli", "run", suite, "--output", out, "--quiet"]
        cmd.append("--no-report")  # the same work either way; leave it out of the comparison
        if not metered:
            cmd.append("--no-meter")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu


def main() -> None:
    """Alternate metered and unmetered runs and print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suite", default="suites/quickstart.yaml")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the runs")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    on, off = [], []
    for _ in range(args.repeats):
        on.append(run_once(args.suite, True, env))
        off.append(run_once(args.suite, False, env))
    threads = env.get("OMP_NUM_THREADS", "default")
    print(f"suite: {args.suite}, repeats: {args.repeats}, OMP_NUM_THREADS: {threads}")
    for i, what in ((0, "wall"), (1, "CPU")):
        for label, runs in (("metered  ", on), ("unmetered", off)):
            times = [r[i] for r in runs]
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"{label} {what}: median {statistics.median(times):.2f} s ({shown})")
        ratio = statistics.median(r[i] for r in on) / statistics.median(r[i] for r in off)
        print(f"metered/unmetered {what} ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
