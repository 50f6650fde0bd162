"""Meter overhead: wall time of a fresh run with metering on against `--no-meter`.

Metered and unmetered runs alternate so drift in machine load hits both alike; the figures are
the metered/unmetered ratio of the medians, of wall and of CPU (user + system) seconds.
Target: wall ratio ≤ 1.02. Runs at OMP_NUM_THREADS=1, which takes OpenMP's spinning threads out
of the comparison (on a small shared VM they vary run to run by more than the overhead).
Short mode: the cut-down quickstart, 2 pairs; --bench-full: the quickstart, 5 pairs.
"""

from __future__ import annotations

import os
import resource
import statistics
from pathlib import Path

from _common import ROOT, paired, pcnbench_run, short_quickstart

TARGET = 1.02


def test_meter_overhead(benchmark, figures, scale, tmp_path: Path):
    """metered/unmetered wall ratio of fresh runs (target ≤ 1.02)."""
    rounds = scale.pick(smoke=1, short=2, full=5)
    suite = scale.pick(
        smoke=short_quickstart(tmp_path / "short.yaml"),
        short=short_quickstart(tmp_path / "short.yaml"),
        full=ROOT / "suites" / "quickstart.yaml",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = iter(range(10**6))
    cpu: dict[bool, list[float]] = {True: [], False: []}

    def once(metered: bool) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        extra = ["--no-report"] + ([] if metered else ["--no-meter"])
        pcnbench_run(suite, tmp_path / f"run{next(runs)}", *extra, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[metered].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    on, off = paired(
        benchmark, lambda: once(True), lambda: once(False), rounds=rounds, warmup=False
    )
    ratio = on / off
    cpu_ratio = statistics.median(cpu[True]) / statistics.median(cpu[False])
    figures("metered_wall_s", on, " s")
    figures("unmetered_wall_s", off, " s")
    figures("metered/unmetered wall", ratio, target=f"≤ {TARGET}", ok=ratio <= TARGET)
    figures("metered/unmetered CPU", cpu_ratio)
    assert on > 0 and off > 0
