"""Wall and CPU time of `pcnbench report` on the quickstart's results (target: ≤ 3 s).

The quickstart is run once (`--no-report`; short mode and --smoke: the cut-down quickstart);
then each round is a fresh `pcnbench report DIR --output TMP` process, interpreter start and
imports included, as a user sees it, with the default figure formats (SVG only). The figure
beside it asks for SVG, PDF and PNG. CPU time (user + system of the child) is recorded too:
on a busy machine it is the steadier number; on an idle one the two agree.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, child_env, pcnbench_run, short_quickstart

TARGET_S = 3.0


def time_report(results: Path, target: Path, *extra: str) -> tuple[float, float]:
    """One `pcnbench report` process: (wall seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pcnbench.cli", "report", str(results), "--output", str(target)]
    subprocess.run([*cmd, *extra], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=child_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_report_wall(benchmark, figures, scale, tmp_path: Path):
    """Median wall seconds of `pcnbench report` (SVG only: ≤ 3 s), and with PDF and PNG."""
    suite = scale.pick(
        smoke=short_quickstart(tmp_path / "short.yaml"),
        short=short_quickstart(tmp_path / "short.yaml"),
        full=ROOT / "suites" / "quickstart.yaml",
    )
    results = tmp_path / "results"
    pcnbench_run(suite, results, "--no-report")
    rounds = scale.pick(smoke=1, short=3, full=3)
    runs: list[tuple[float, float]] = []
    counter = iter(range(10_000))
    benchmark.pedantic(
        lambda: runs.append(time_report(results, tmp_path / f"r{next(counter)}")),
        rounds=rounds,
        iterations=1,
    )
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    every = time_report(results, tmp_path / "all", "--formats", "svg,pdf,png")
    figures("suite", Path(suite).name)
    figures("report_wall_s", wall, " s", target=f"≤ {TARGET_S:g} s", ok=wall <= TARGET_S)
    figures("report_cpu_s", cpu, " s")
    figures("report_all_formats_wall_s", every[0], " s")
    assert wall > 0
