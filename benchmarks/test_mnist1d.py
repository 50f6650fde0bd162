"""Wall time of `pcnbench run suites/mnist1d.yaml`, and its dense models beside the published.

Full mode (`--bench-full`) runs the shipped suite: every method on MNIST-1D's ConvBase and a 2×
wider one, the paper's recipe (150 epochs), three seeds. Target: ≤ 10 minutes on 2 idle CPU
cores, report included. Short and smoke modes run a cut-down copy (one seed, a few epochs):
their accuracies mean nothing. The figures printed: the wall time, each dense model's mean test
accuracy beside the published one, and each claim's verdict.
"""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path

import yaml
from _common import ROOT, pcnbench_run

from pcnbench.claims import judge_claims
from pcnbench.report import load_report_data

TARGET_S = 600.0  # report included, 2 idle cores
SUITE = ROOT / "suites" / "mnist1d.yaml"


def short_mnist1d(path: Path, epochs: int) -> Path:
    """The shipped suite cut to one seed and `epochs` epochs (its methods' epochs cut along)."""
    suite = yaml.safe_load(SUITE.read_text(encoding="utf-8"))
    suite["name"] = "mnist1d-short"
    suite["seeds"] = [0]
    suite["recipe"].update(epochs=epochs, eval_every=0)
    for method in suite["methods"]:
        params = method.get("params", {}) if isinstance(method, dict) else {}
        for key in ("at_epoch", "finetune_epochs"):
            if key in params:
                params[key] = max(1, epochs // 4)
        if "levels" in params:
            params["levels"] = 1
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def test_mnist1d_suite_wall(benchmark, figures, scale, tmp_path: Path):
    """Fresh wall seconds of the MNIST-1D suite (target ≤ 600 s in full mode)."""
    suite = scale.pick(
        smoke=short_mnist1d(tmp_path / "smoke.yaml", 2),
        short=short_mnist1d(tmp_path / "short.yaml", 8),
        full=SUITE,
    )
    out = tmp_path / "out"
    walls: list[float] = []

    def run() -> None:
        walls.append(pcnbench_run(suite, out)[0])

    benchmark.pedantic(run, rounds=1, iterations=1)
    wall = walls[0]
    full = suite == SUITE
    figures("suite", Path(suite).name)
    figures("wall_s", wall, " s", target=f"≤ {TARGET_S:g} s" if full else "", ok=None)
    if full:
        figures("within_target", str(wall <= TARGET_S), ok=wall <= TARGET_S)
    with sqlite3.connect(out / "results.db") as db:
        rows = db.execute(
            "SELECT c.model_setting, r.accuracy FROM results r JOIN cells c USING (cell_id) "
            "WHERE c.method = 'dense' AND c.status = 'done'"
        ).fetchall()
    by_model: dict[str, list[float]] = {}
    for setting, accuracy in rows:
        by_model.setdefault(setting, []).append(accuracy)
    for setting, values in sorted(by_model.items()):
        figures(f"dense_accuracy {setting}", 100 * statistics.mean(values), " %")
    from pcnbench.manager import load_plugins

    data = load_report_data(out, load_plugins())
    for claim in judge_claims(data):
        figures(f"claim {claim.name}", claim.verdict)
