"""Measured latency under load: a suite run on the machine as it is, then beside busy CPU loops.

Runs the suite twice into fresh directories: idle, then beside 2 `while True: pass` processes
(killed afterwards). Figures: per result row the paired `latency_ratio` (reduced / dense, timed
interleaved with dense) in both runs, and the issue's criteria:

- every magnitude and lottery row's latency_ratio lies within 0.8–1.25 in both runs (masks do
  not change what dense kernels do, so the ratio is 1 up to measurement error);
- every PCN and low-rank row's latency_ratio differs between the runs by less than 25%.

Short mode: the cut-down quickstart; --bench-full: the quickstart.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _common import ROOT, pcnbench_run, short_quickstart

MASKED = ("magnitude", "lottery")
REDUCED = ("pcn", "lowrank")
MASKED_RANGE = (0.8, 1.25)
MAX_CHANGE = 0.25
LOOPS = 2


def results(out: Path) -> pd.DataFrame:
    """One row per stored result: its method, setting, seed, index and latency figures."""
    with sqlite3.connect(out / "results.db") as db:
        frame = pd.read_sql_query(
            "SELECT c.cell_id, c.method, c.seed, r.idx, r.latency_ratio, r.latency_noisy, "
            "r.latency_ms, r.dense_latency_ms FROM results r JOIN cells c USING (cell_id) "
            "ORDER BY c.cell_id, r.idx",
            db,
        )
    return frame.set_index(["cell_id", "idx"])


def test_latency_under_load(benchmark, figures, scale, tmp_path: Path):
    """Paired latency ratios idle and beside busy loops; the masked-range and change criteria."""
    suite = scale.pick(
        smoke=short_quickstart(tmp_path / "short.yaml"),
        short=short_quickstart(tmp_path / "short.yaml"),
        full=ROOT / "suites" / "quickstart.yaml",
    )
    figures("load_average_before", os.getloadavg()[0])
    pcnbench_run(suite, tmp_path / "idle", "--no-report")
    loops: list[subprocess.Popen] = []

    def start_loops():
        loops.extend(
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(LOOPS)
        )
        time.sleep(1.0)  # let the loops take their cores

    def stop_loops():
        for loop in loops:
            loop.kill()
            loop.wait()

    try:
        benchmark.pedantic(
            pcnbench_run,
            args=(suite, tmp_path / "loaded", "--no-report"),
            setup=start_loops,
            rounds=1,
            iterations=1,
        )
    finally:
        stop_loops()
    idle, loaded = results(tmp_path / "idle"), results(tmp_path / "loaded")
    both = idle.add_suffix("_idle").join(loaded.add_suffix("_loaded"))
    masked = both[both["method_idle"].isin(MASKED)]
    values = pd.concat([masked["latency_ratio_idle"], masked["latency_ratio_loaded"]])
    low, high = MASKED_RANGE
    in_range = bool(len(values)) and bool(values.between(low, high).all())
    reduced = both[both["method_idle"].isin(REDUCED)]
    change = (reduced["latency_ratio_loaded"] / reduced["latency_ratio_idle"] - 1).abs()
    steady = bool(len(change)) and bool((change < MAX_CHANGE).all())
    for (_cell, idx), row in both.iterrows():
        figures(
            f"{row['method_idle']} seed {row['seed_idle']} row {idx} latency_ratio idle/loaded",
            f"{row['latency_ratio_idle']:.3f}/{row['latency_ratio_loaded']:.3f}",
        )
    figures("dense_latency_ms_idle", float(idle["dense_latency_ms"].median()), " ms")
    figures("dense_latency_ms_loaded", float(loaded["dense_latency_ms"].median()), " ms")
    figures(
        "noisy rows idle/loaded", f"{idle['latency_noisy'].sum()}/{loaded['latency_noisy'].sum()}"
    )
    figures(
        "masked latency_ratio range",
        f"{values.min():.3f}–{values.max():.3f}",
        target=f"within {low}–{high}",
        ok=in_range,
    )
    figures(
        "reduced latency_ratio largest change",
        float(change.max()),
        target=f"< {MAX_CHANGE}",
        ok=steady,
    )
    assert len(values) and len(change)
