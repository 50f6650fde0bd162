"""Wall time of the whole `pcnbench run suites/quickstart.yaml` command, fresh and re-run.

The benchmark is a fresh run (empty output directory, so every cell trains); the figure beside
it is an immediate re-run into the same directory (everything stored, nothing retrained).
Target: fresh ≤ 15 s on 2 idle CPU cores, report included. Short mode: one round; --smoke:
the cut-down quickstart.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

from _common import ROOT, pcnbench_run, short_quickstart

TARGET_S = 15.0  # report included, 2 idle cores


def test_quickstart_wall(benchmark, figures, scale, tmp_path: Path):
    """Fresh and re-run wall seconds of the quickstart (target fresh ≤ 15 s)."""
    rounds = scale.pick(smoke=1, short=1, full=3)
    suite = scale.pick(
        smoke=short_quickstart(tmp_path / "short.yaml"),
        short=ROOT / "suites" / "quickstart.yaml",
        full=ROOT / "suites" / "quickstart.yaml",
    )
    counter = itertools.count()
    fresh: list[float] = []
    rerun: list[float] = []

    def setup():
        return (tmp_path / f"out{next(counter)}",), {}

    def run(out: Path) -> None:
        start = time.perf_counter()
        pcnbench_run(suite, out)
        fresh.append(time.perf_counter() - start)

    def again(out: Path) -> None:
        rerun.append(pcnbench_run(suite, out)[0])

    benchmark.pedantic(run, setup=setup, teardown=again, rounds=rounds, iterations=1)
    f, r = statistics.median(fresh), statistics.median(rerun)
    figures("suite", str(Path(suite).name))
    figures("fresh_wall_s", f, " s", target=f"≤ {TARGET_S:g} s", ok=f <= TARGET_S)
    figures("rerun_wall_s", r, " s")
    assert r < f  # a re-run trains nothing
