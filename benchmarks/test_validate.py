"""`pcnbench validate` on a 10^4-cell suite and on a 1-cell one: wall time and peak memory.

Each validation runs in a fresh process with its output discarded (the line count is checked:
one line per cell); peak memory is that process's largest resident set, read by
a wrapper process through `RUSAGE_CHILDREN` (which keeps the largest child a process ever
waited for). Criterion for the large suite (issue 12): under 3 s wall and under 1 GB peak.
On a busy machine the figures are only as good as the machine is idle: the load average before
the runs is recorded. Short mode: 1 run each; --bench-full: 3.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from _common import ROOT, child_env

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
# run `pcnbench validate SUITE` once; print [wall seconds, peak MB of it, stdout lines]
WRAPPER = """\
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run([sys.executable, "-m", "pcnbench.cli", "validate", sys.argv[1]],
                      capture_output=True, text=True)
wall = time.perf_counter() - start
if done.returncode:
    sys.exit(done.stderr[-3000:])
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peak = kib / 1024 if sys.platform != "darwin" else kib / 2**20
cells = sum(1 for line in done.stdout.splitlines() if line[:16].isalnum() and line[16:18] == "  ")
print(json.dumps([wall, peak, cells]))
"""


def validate_once(suite: Path, cells: int) -> tuple[float, float]:
    """Wall seconds and peak MB of one `pcnbench validate suite` in a new process.

    Without COLUMNS in its environment (`child_env`): a width would shorten the cell ids that
    the line count recognises. The wrapper passes its environment on to `pcnbench validate`.
    """
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(suite)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wall, peak, lines = json.loads(done.stdout.strip().splitlines()[-1])
    assert lines == cells, f"{suite}: expected {cells} cell lines, got {lines}"
    return wall, peak


@pytest.mark.parametrize(("text", "cells"), [(BIG, 10_000), (ONE, 1)], ids=["10^4-cells", "1-cell"])
def test_validate(benchmark, figures, scale, tmp_path: Path, text: str, cells: int):
    """Median wall seconds and peak MB of validating the suite (10^4 cells: < 3 s, < 1 GB)."""
    repeat = scale.pick(smoke=1, short=1, full=3)
    suite = tmp_path / f"{cells}.yaml"
    suite.write_text(text, encoding="utf-8")
    figures("load_average_before", os.getloadavg()[0])
    runs: list[tuple[float, float]] = []
    benchmark.pedantic(
        lambda: runs.append(validate_once(suite, cells)), rounds=repeat, iterations=1
    )
    wall = statistics.median(w for w, _ in runs)
    peak = max(p for _, p in runs)
    big = cells == 10_000
    figures(
        "validate_wall_s",
        wall,
        " s",
        target=f"< {MAX_WALL_S:g} s" if big else "",
        ok=wall < MAX_WALL_S if big else None,
    )
    figures(
        "peak_rss_mb",
        peak,
        " MB",
        target=f"< {MAX_PEAK_MB:g} MB" if big else "",
        ok=peak < MAX_PEAK_MB if big else None,
    )
    assert wall > 0 and peak > 0
