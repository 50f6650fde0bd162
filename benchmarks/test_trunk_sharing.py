"""Epochs trained with the shared dense trunk against without.

quickstart: runs the suite twice (shared, then `--no-share`) and counts the epochs each
actually trained from the stored phases (train phases not restored from the trunk), with wall
time, and checks that the stored accuracies agree. cifar10: no training; the suite's planned
cells through `pcnbench.projection.project_plan` with each built-in method's epoch plan
(`_common.method_plan`), shared and unshared. Short mode: the cut-down quickstart.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

from _common import ROOT, method_plan, pcnbench_run, short_quickstart

from pcnbench.projection import grid_points, project_plan


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


def test_trunk_sharing_quickstart(benchmark, figures, scale, tmp_path: Path):
    """Shared/unshared epochs trained on the quickstart; identical accuracies."""
    suite = scale.pick(
        smoke=short_quickstart(tmp_path / "short.yaml"),
        short=short_quickstart(tmp_path / "short.yaml"),
        full=ROOT / "suites" / "quickstart.yaml",
    )
    walls: dict[bool, float] = {}

    def run(share: bool) -> None:
        out = tmp_path / ("shared" if share else "unshared")
        extra = ["--no-report"] + ([] if share else ["--no-share"])
        walls[share] = pcnbench_run(suite, out, *extra)[0]

    benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    run(False)
    shared, alone_s, acc_s = incurred_epochs(tmp_path / "shared" / "results.db")
    unshared, alone_u, acc_u = incurred_epochs(tmp_path / "unshared" / "results.db")
    figures("suite", Path(suite).name)
    figures("epochs_shared", shared)
    figures("epochs_unshared", unshared)
    figures("shared/unshared epochs", shared / unshared)
    figures("shared/unshared wall", walls[True] / walls[False])
    figures("epochs charged as if alone (shared run)", alone_s)
    figures("accuracies identical", str(acc_s == acc_u))
    assert shared < unshared
    assert alone_s == alone_u


def test_trunk_sharing_cifar10_plan(benchmark, figures):
    """Shared/unshared epochs of the cifar10 suite's plan, by method (no training)."""
    from pcnbench.manager import load_plugins
    from pcnbench.suite import load_suite

    cells = load_suite(ROOT / "suites" / "cifar10.yaml", load_plugins()).cells
    ones = dict.fromkeys(grid_points(cells), 1.0)
    got = benchmark(project_plan, cells, ones, epochs_of=method_plan)
    by_method: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for cell in cells:  # in the plan's order: a method's saving is what its cells skip there
        by_method[cell.method.name][0] += got.epochs_by_cell[cell.id]
        by_method[cell.method.name][1] += method_plan(cell).total
    for name, (shared, alone) in by_method.items():
        figures(f"{name}: shared/unshared", shared / alone)
    floor = sum(method_plan(c).own for c in cells) + len(
        {(c.dataset.name, repr(c.model.params), c.seed) for c in cells}
    ) * max(c.recipe.epochs for c in cells)
    figures("cells", len(cells))
    figures("epochs_shared", got.epochs)
    figures("epochs_unshared", got.unshared_epochs)
    figures("shared/unshared epochs", got.epochs / got.unshared_epochs)
    figures("floor (each dense trunk once)/unshared", floor / got.unshared_epochs)
    assert not got.at_least
    assert got.epochs < got.unshared_epochs
