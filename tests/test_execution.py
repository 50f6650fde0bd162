"""One execution path: a cell stores the same columns wherever its executor runs it."""

from __future__ import annotations

import importlib.util
import re
import sqlite3

import pandas as pd

from pcnbench.execution import CellContext, provide_host, release, run_cell
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE

# two cells (dense and magnitude) of one trunk group, metered with every installed meter
METERED = BASE_SUITE.replace(
    "  - dense", "  - dense\n  - name: magnitude\n    params: {sparsity: 0.5, finetune_epochs: 1}"
)
NUMBERS = ["params", "macs", "accuracy", "step", "epochs_trained"]


def _columns(out) -> pd.DataFrame:
    """Every stored result column, by cell and index."""
    with sqlite3.connect(out / "results.db") as db:
        frame = pd.read_sql_query(
            "SELECT r.*, c.status, c.error FROM results r JOIN cells c USING (cell_id)", db
        )
    return frame.sort_values(["cell_id", "idx"]).reset_index(drop=True)


def _labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The text columns that say how each figure was obtained (measured, estimated, why not).

    A process measures an architecture's inference once and labels later results that reuse
    the figures; which cell that is depends on how cells were spread over processes.
    """
    text = frame[[c for c in frame.columns if c.endswith(("_method", "_note"))]]
    return text.map(lambda v: re.sub(r" \(the figures of an earlier .*?\)", "", v or ""))


def _filled(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Per cell, which columns hold a value (metered figures included)."""
    return {
        cell: sorted(c for c in rows.columns if rows[c].notna().all())
        for cell, rows in frame.groupby("cell_id")
    }


def _run(host, write_suite, out, text=METERED, name="suite.yaml", **options) -> pd.DataFrame:
    loaded = load_suite(write_suite(text, name), host)
    summary = Runner(loaded, host, output=out, **options).run()
    assert not summary.failed, summary
    return _columns(out)


def test_a_cell_stores_the_same_columns_in_process_in_a_pool_and_on_ray(
    host, write_suite, tmp_path
):
    alone = _run(host, write_suite, tmp_path / "jobs1")
    assert alone["inference_method"].str.startswith("measured").all()  # metered, not disabled
    one = alone["cell_id"].iloc[-1]  # the magnitude cell

    loaded = load_suite(write_suite(METERED), host)
    runner = Runner(loaded, host, output=tmp_path / "only", jobs=2)
    assert not runner.run(only=one).failed  # --jobs 2 --only <one cell>
    only = _columns(tmp_path / "only")
    pool = _run(host, write_suite, tmp_path / "pool", jobs=2)
    runs = {"--jobs 2 --only": only, "--jobs 2": pool}
    if importlib.util.find_spec("ray") is not None:  # tox installs it; a bare install may not
        ray_suite = METERED + "executor: {name: ray, options: {num_cpus: 2}}\n"
        runs["--executor ray"] = _run(host, write_suite, tmp_path / "ray", ray_suite, "ray.yaml")
    expected = alone[alone["cell_id"].isin(only["cell_id"])].reset_index(drop=True)
    for how, frame in runs.items():
        mine = alone if len(frame) == len(alone) else expected
        assert _filled(frame) == _filled(mine), how
        pd.testing.assert_frame_equal(_labels(frame), _labels(mine), obj=how)
        pd.testing.assert_frame_equal(frame[NUMBERS], mine[NUMBERS], obj=how)


def test_the_suite_is_expanded_once_per_run(host, write_suite, tmp_path, monkeypatch):
    import pcnbench.suite.loading as suite_module

    calls = []
    original = suite_module.expand

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(suite_module, "expand", counting)
    loaded = load_suite(write_suite(METERED), host)
    assert not Runner(loaded, host, output=tmp_path / "out", metering=False, jobs=2).run().failed
    assert len(calls) == 1


def test_a_process_keeps_one_context_per_config_and_reuses_the_loaded_data(
    host, write_suite, tmp_path
):
    loaded = load_suite(write_suite(METERED), host)
    runner = Runner(loaded, host, output=tmp_path / "out", metering=False)
    job = runner.job(loaded.cells)
    provide_host(job.config, host)
    try:
        first, second = (run_cell(job.config, cell) for cell in loaded.cells)
        assert first.status == second.status == "done"
        from pcnbench.execution import context

        ctx = context(job.config)
        assert isinstance(ctx, CellContext) and ctx.host is host
        assert ctx._data[0] is not None  # the dataset stays loaded for the next cell
    finally:
        release(job.config)
