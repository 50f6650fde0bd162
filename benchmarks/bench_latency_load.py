"""Measured latency under load: the quickstart idle, then beside busy CPU loops.

Run: python benchmarks/bench_latency_load.py [--suite FILE] [--loops N] [--threads T] [--keep DIR]

Runs `pcnbench run <suite> --quiet --no-report` twice into fresh directories: on the machine as
it is, then beside N (default 2) `python -c "while True: pass"` processes, killed afterwards.
Prints each result's `latency_ratio` (reduced / dense, timed interleaved with dense) in both
runs, its interval and noisy flag, the threads it ran at, the unpaired ratio the absolute figures
alone give (latency over the dense cell's, each timed in its own window), and the absolute dense
latency each run measured; then the issue's criteria, PASS or FAIL each:

- every magnitude and lottery row's latency_ratio lies within 0.8–1.25 in both runs (masks do
  not change what dense kernels do, so the ratio is 1 up to measurement error);
- every PCN and low-rank row's latency_ratio differs between the runs by less than 25%.

"Idle" is only as idle as the machine is: the load average before each run is printed, and a
run that starts oversubscribed says so on stderr (counted here). On a loaded 2-core machine the
run beside the loops takes several times longer than the idle one.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
MASKED = ("magnitude", "lottery")  # dense kernels: ratio 1 up to measurement error
REDUCED = ("pcn", "lowrank")  # smaller architectures: the ratio must hold under load
MASKED_RANGE = (0.8, 1.25)
MAX_CHANGE = 0.25


def run_suite(suite: str, out: Path, threads: int | None) -> tuple[float, str]:
    """Run the suite into `out`; (wall seconds, stderr). Raises if the run fails."""
    cmd = [sys.executable, "-m", "pcnbench.cli", "run", suite, "--output", str(out)]
    cmd += ["--quiet", "--no-report"]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stderr


def results(out: Path) -> pd.DataFrame:
    """One row per stored result: its setting, seed, index and latency figures."""
    with sqlite3.connect(out / "results.db") as db:
        frame = pd.read_sql_query(
            "SELECT c.cell_id, c.method, c.method_setting, c.seed, r.idx, r.latency_ratio, "
            "r.latency_ratio_low, r.latency_ratio_high, r.latency_noisy, r.latency_ms, "
            "r.dense_latency_ms, r.inference_threads "
            "FROM results r JOIN cells c USING (cell_id) ORDER BY c.cell_id, r.idx",
            db,
        )
    # what the absolute figures alone would say: latency over the dense cell's of the same seed,
    # each measured in its own window
    dense = frame[frame["method"] == "dense"].set_index("seed")["latency_ms"]
    frame["unpaired_ratio"] = frame["latency_ms"] / frame["seed"].map(dense)
    return frame.set_index(["cell_id", "idx"])


def busy_loops(n: int) -> list[subprocess.Popen]:
    """N processes spinning a CPU each."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    """Run the suite idle and loaded, print the paired latency ratios and the criteria."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", default="suites/quickstart.yaml")
    parser.add_argument("--loops", type=int, default=2, help="busy CPU loops beside run 2")
    parser.add_argument("--threads", type=int, help="pass --threads T (default: pcnbench's)")
    parser.add_argument("--keep", metavar="DIR", help="keep both runs' outputs under DIR")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pcnbench-latency-"))
    runs: dict[str, pd.DataFrame] = {}
    for name in ("idle", "loaded"):
        out = base / name
        if out.exists():
            raise SystemExit(f"{out} exists: pass an empty --keep directory")
        loops = busy_loops(args.loops) if name == "loaded" else []
        try:
            if loops:
                time.sleep(1.0)  # let the loops take their cores
            load = os.getloadavg()[0]
            seconds, stderr = run_suite(args.suite, out, args.threads)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
        warned = sum("oversubscribed" in line for line in stderr.splitlines())
        runs[name] = results(out)
        print(
            f"{name}: {seconds:.0f} s, load average {load:.2f} at start on {os.cpu_count()} "
            f"cores, {len(loops)} busy loops, oversubscription warnings: {warned}"
        )
    idle, loaded = runs["idle"], runs["loaded"]
    both = idle.merge(loaded, left_index=True, right_index=True, suffixes=("_idle", "_loaded"))
    print()
    print(
        f"{'method':<10} {'setting':<44} {'seed':>4} {'idx':>3}  {'idle ratio [95% CI]':<24}"
        f" {'loaded ratio [95% CI]':<24} {'change':>7}  threads  unpaired idle/loaded"
    )
    for (_cell, idx), row in both.iterrows():

        def shown(which: str, row=row) -> str:
            flag = " noisy" if row[f"latency_noisy_{which}"] else ""
            return (
                f"{row[f'latency_ratio_{which}']:.3f} [{row[f'latency_ratio_low_{which}']:.3f}, "
                f"{row[f'latency_ratio_high_{which}']:.3f}]{flag}"
            )

        change = row["latency_ratio_loaded"] / row["latency_ratio_idle"] - 1
        setting = str(row["method_setting_idle"])[:44]
        print(
            f"{row['method_idle']:<10} {setting:<44} {row['seed_idle']:>4} {idx:>3}  "
            f"{shown('idle'):<24} {shown('loaded'):<24} {change:>+7.1%}  "
            f"{row['inference_threads_idle']:.0f}/{row['inference_threads_loaded']:.0f}      "
            f"{row['unpaired_ratio_idle']:.3f}/{row['unpaired_ratio_loaded']:.3f}"
        )
    for name, frame in runs.items():
        dense = frame[frame["method"] == "dense"]
        print(
            f"{name}: dense latency {dense['dense_latency_ms'].median():.4f} ms (median), "
            f"noisy rows {int(frame['latency_noisy'].sum())} of {len(frame)}"
        )
    print()
    verdicts = []
    masked = both[both["method_idle"].isin(MASKED)]
    low, high = MASKED_RANGE
    values = pd.concat([masked["latency_ratio_idle"], masked["latency_ratio_loaded"]])
    ok = bool(len(values)) and bool(values.between(low, high).all())
    verdicts.append(ok)
    print(
        f"{'PASS' if ok else 'FAIL'}: magnitude/lottery latency_ratio within {low}–{high} in both "
        f"runs ({len(values)} values, {values.min():.3f}–{values.max():.3f})"
    )
    reduced = both[both["method_idle"].isin(REDUCED)]
    change = (reduced["latency_ratio_loaded"] / reduced["latency_ratio_idle"] - 1).abs()
    ok = bool(len(change)) and bool((change < MAX_CHANGE).all())
    verdicts.append(ok)
    print(
        f"{'PASS' if ok else 'FAIL'}: PCN/low-rank latency_ratio differs between runs by less "
        f"than {MAX_CHANGE:.0%} ({len(change)} rows, largest {change.max():.1%})"
    )
    print(f"outputs: {base}")
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
