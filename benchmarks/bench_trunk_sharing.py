"""Epochs trained with the shared dense trunk against without, on the quickstart and cifar10 plan.

Run: python benchmarks/bench_trunk_sharing.py [--skip-quickstart]

quickstart: runs `pcnbench run suites/quickstart.yaml` twice (shared, then `--no-share`) into
temporary directories and counts the epochs each actually trained from the stored phases (train
phases not restored from the trunk), plus wall time; it also checks that the stored accuracies
agree. cifar10: no training. For each cell of the expanded suite it models the sequence of
`train()` calls its method makes (trunk prefixes, then its own training), replays them in the
runner's order against a cache of trunk steps, and sums the epochs trained either way.
The per-method sequences are written here from each method's parameters (the methods declare
no trunk plan of their own), mirroring their `run()`.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CIFAR10_TRAIN = 50_000


def incurred_epochs(db: Path) -> tuple[float, float, dict[str, float]]:
    """(epochs trained, epochs as if every cell ran alone, accuracy by cell and row) of a run."""
    with sqlite3.connect(db) as con:
        spe = dict(
            con.execute("SELECT cell_id, MAX(step / epoch) FROM epochs WHERE epoch > 0 GROUP BY 1")
        )
        rows = con.execute(
            "SELECT cell_id, end_step - start_step FROM phases WHERE kind = 'train' "
            "AND COALESCE(reused, 0) = 0"
        ).fetchall()
        alone = con.execute(
            "SELECT cell_id, MAX(epochs_trained) FROM results GROUP BY cell_id"
        ).fetchall()
        acc = dict(
            con.execute("SELECT cell_id || '/' || idx, accuracy FROM results ORDER BY 1").fetchall()
        )
    trained = sum(steps / spe[cell] for cell, steps in rows)
    return trained, sum(e for _, e in alone), acc


def quickstart() -> None:
    """Run the quickstart shared and unshared; print epochs trained and wall time of each."""
    figures = {}
    for share in (True, False):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "pcnbench.cli", "run", "suites/quickstart.yaml"]
            cmd += ["--output", out, "--quiet", "--no-report"]
            if not share:
                cmd.append("--no-share")
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            figures[share] = (*incurred_epochs(Path(out) / "results.db"), wall)
    (shared, alone_s, acc_s, wall_s), (unshared, alone_u, acc_u, wall_u) = (
        figures[True],
        figures[False],
    )
    print("quickstart (suites/quickstart.yaml, real runs):")
    print(f"  epochs trained, shared:   {shared:.2f}   wall {wall_s:.1f} s")
    print(f"  epochs trained, unshared: {unshared:.2f}   wall {wall_u:.1f} s")
    print(f"  epochs charged as if alone: shared run {alone_s:.2f}, unshared run {alone_u:.2f}")
    print(f"  ratio shared/unshared: {shared / unshared:.3f}")
    same = acc_s == acc_u
    print(f"  stored accuracies identical: {same} ({len(acc_s)} result rows)")


def method_calls(method, params, total: int, spe: int) -> list[tuple[str, int]]:
    """The method's training as ("trunk", until_step) and ("own", steps) items, in order."""
    name = method
    if name == "dense":
        return [("trunk", total)]
    if name == "pcn":
        return [("trunk", params.at_epoch * spe), ("own", total - params.at_epoch * spe)]
    if name == "magnitude":
        from pcnbench_plugins.magnitude import finetune_epochs

        ft = finetune_epochs(params) * spe
        if params.schedule == "oneshot":
            return [("trunk", total), ("own", ft)]
        # gradual masks from its first update on; only the stretch before start_epoch is dense
        return [("trunk", params.start_epoch * spe), ("own", total - params.start_epoch * spe + ft)]
    if name == "lottery":
        from pcnbench_plugins.lottery import rewind_step

        k = rewind_step(params.rewind, spe)
        return [("trunk", k), ("trunk", total), ("own", params.levels * (total - k))]
    if name == "lowrank":
        if params.at_epoch == "end":
            return [("trunk", total), ("own", params.finetune_epochs * spe)]
        return [("trunk", params.at_epoch * spe), ("own", total - params.at_epoch * spe)]
    raise ValueError(f"no plan model for method {name!r}")


def cifar10_plan() -> None:
    """Replay the cifar10 suite's cells against a trunk cache; print epochs with and without."""
    from pcnbench.manager import load_plugins
    from pcnbench.suite import load_suite

    host = load_plugins()
    loaded = load_suite(ROOT / "suites" / "cifar10.yaml", host)
    cells = loaded.cells
    cached: dict[tuple, set[int]] = defaultdict(set)
    shared = unshared = own = 0.0
    by_method: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    trunk_epochs: dict[tuple, int] = {}
    for cell in cells:
        recipe = cell.recipe
        n_train = CIFAR10_TRAIN - round(CIFAR10_TRAIN * recipe.validation_split)
        spe = math.ceil(n_train / recipe.batch_size)
        total = recipe.epochs * spe
        group = (cell.dataset.name, repr(cell.dataset.params), repr(cell.model), cell.seed)
        step = alone = trained = 0
        for kind, n in method_calls(cell.method.name, cell.method.params, total, spe):
            if kind == "own":
                alone += n
                trained += n
                own += n / spe
                continue
            alone += n - step
            best = max((s for s in cached[group] if step < s <= n), default=step)
            trained += n - best
            cached[group].add(n)
            step = n
        shared += trained / spe
        unshared += alone / spe
        by_method[cell.method.name][0] += trained / spe
        by_method[cell.method.name][1] += alone / spe
        trunk_epochs[group] = recipe.epochs
    print(f"cifar10 (suites/cifar10.yaml plan, {len(cells)} cells, no training):")
    for name, (s, u) in by_method.items():
        print(f"  {name:10s} shared {s:9.1f}  unshared {u:9.1f}  ratio {s / u:.3f}")
    print(f"  epochs trained, shared:   {shared:.1f}")
    print(f"  epochs trained, unshared: {unshared:.1f}")
    print(f"  ratio shared/unshared: {shared / unshared:.3f}")
    floor = own + sum(trunk_epochs.values())
    print(
        f"  floor with any trunk sharing (each dense trunk once, branches' own work kept): "
        f"{floor:.1f} epochs, ratio {floor / unshared:.3f}"
    )


def main() -> None:
    """Print both measurements."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-quickstart", action="store_true")
    args = parser.parse_args()
    if not args.skip_quickstart:
        quickstart()
    cifar10_plan()


if __name__ == "__main__":
    main()
