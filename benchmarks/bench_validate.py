"""`pcnbench validate` on a 10^4-cell suite and on a 1-cell one: wall time and peak memory.

Run: python benchmarks/bench_validate.py [--repeat N]

Writes both suites to a temporary folder and runs `pcnbench validate SUITE` on each N times
(default 3), each in a fresh process with its output discarded. Prints, per suite, the median
wall seconds and the peak resident memory in MB (the largest `ru_maxrss` of those child
processes, as `resource.getrusage(RUSAGE_CHILDREN)` reports it), then issue 12's criterion for
the large suite, PASS or FAIL: under 3 s wall and under 1 GB peak.
On a busy machine the figures are only as good as the machine is idle: the load average
before the runs is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_WALL_S = 3.0
MAX_PEAK_MB = 1000.0

# 10 seeds × 10 widths × 10 sparsities × 10 fine-tuning lengths
BIG = """\
name: big
seeds: 10
datasets: [{name: synthetic, params: {n_train: 64, n_test: 32}}]
models: [{name: mlp, params: {width: [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096], depth: 1}}]
methods:
  - name: magnitude
    params:
      sparsity: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
      finetune_epochs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
recipe: {epochs: 20, batch_size: 16, optimizer: {name: sgd, lr: 0.1}}
"""
ONE = """\
name: one
seeds: 1
datasets: [{name: synthetic, params: {n_train: 64, n_test: 32}}]
models: [{name: mlp, params: {width: 8, depth: 1}}]
methods: [{name: magnitude, params: {sparsity: 0.5, finetune_epochs: 1}}]
recipe: {epochs: 20, batch_size: 16, optimizer: {name: sgd, lr: 0.1}}
"""
SUITES = {"10^4 cells": (BIG, 10_000), "1 cell": (ONE, 1)}


def validate_once(suite: Path, cells: int) -> float:
    """Run `pcnbench validate suite` in a new process and return its wall seconds."""
    cmd = [sys.executable, "-m", "pcnbench.cli", "validate", str(suite)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = done.stdout.count("\n")
    if lines != cells + 1:  # the header, then one line per cell
        raise SystemExit(f"{suite}: expected {cells + 1} lines of output, got {lines}")
    return wall


def peak_child_mb() -> float:
    """The largest peak RSS of the child processes waited for so far, in MB."""
    kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20  # macOS counts bytes


def measure(suite: Path, cells: int, repeat: int) -> tuple[float, float]:
    """Median wall seconds and peak MB of `repeat` validations of `suite`.

    Measured in a process of its own (this script with --measure), since RUSAGE_CHILDREN
    keeps the largest child a process ever waited for.
    """
    cmd = [sys.executable, __file__, "--measure", str(suite), str(cells), "--repeat", str(repeat)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    walls, peak = json.loads(done.stdout.strip().splitlines()[-1])
    return statistics.median(walls), peak


def main(argv: list[str] | None = None) -> int:
    """Measure both suites, print the figures and the criterion; 1 if it fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="validations per suite")
    parser.add_argument("--measure", nargs=2, metavar=("SUITE", "CELLS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # the measuring process: JSON [walls, peak MB] on stdout
        suite, cells = Path(args.measure[0]), int(args.measure[1])
        walls = [validate_once(suite, cells) for _ in range(args.repeat)]
        print(json.dumps([walls, peak_child_mb()]))
        return 0
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, cells) in SUITES.items():
            suite = Path(tmp) / f"{cells}.yaml"
            suite.write_text(text, encoding="utf-8")
            figures[name] = wall, peak = measure(suite, cells, args.repeat)
            print(f"{name}: median {wall:.2f} s wall, peak {peak:.0f} MB RSS ({args.repeat} runs)")
    wall, peak = figures["10^4 cells"]
    ok = wall < MAX_WALL_S and peak < MAX_PEAK_MB
    print(f"10^4 cells under {MAX_WALL_S:g} s and {MAX_PEAK_MB:g} MB: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
