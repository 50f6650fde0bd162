"""Wall time of the whole `pcnbench run suites/quickstart.yaml` command, fresh and re-run.

Run: python benchmarks/bench_quickstart.py [--repeats N]
Prints the median wall seconds of a fresh run (empty output directory, so every cell trains)
and of an immediate re-run (everything stored, nothing retrained). Target: fresh ≤ 60 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    """Seconds one command takes; raises if it fails."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Time fresh and repeated quickstart runs and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suite", default="suites/quickstart.yaml")
    args = parser.parse_args()
    fresh, rerun = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "pcnbench.cli", "run", args.suite, "--output", out]
            fresh.append(timed([*cmd, "--quiet"]))
            rerun.append(timed([*cmd, "--quiet"]))
    print(f"suite: {args.suite}, repeats: {args.repeats}")
    print(
        f"fresh run wall: median {statistics.median(fresh):.1f} s  (all: "
        + ", ".join(f"{t:.1f}" for t in fresh)
        + ")"
    )
    print(
        f"re-run wall:    median {statistics.median(rerun):.1f} s  (all: "
        + ", ".join(f"{t:.1f}" for t in rerun)
        + ")"
    )


if __name__ == "__main__":
    main()
