"""The shared dense trunk: branching from cached dense states changes no number, only the work."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
import torch

from pcnbench.execution import run_method
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from pcnbench.trunk import Segment, TrunkCache, clip_segments, trunk_key

# Three epochs of 4 steps; every built-in way of branching off the dense run.
SUITE = """\
name: trunk
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32}
models:
  - name: mlp
    params: {width: 16, depth: 2}
methods:
  - dense
  - name: pcn
    params: {at_epoch: 1, keep: f0.5, layers: {fc: null}, calibration: 64}
  - name: magnitude
    params: {sparsity: 0.5, finetune_epochs: 1}
  - name: lottery
    params: {levels: 2, rate: 0.5, rewind: 1ep}
  - name: lowrank
    params: {at_epoch: 1, rank: r0.5}
  - name: lowrank
    params: {at_epoch: end, rank: r0.5, finetune_epochs: 1}
recipe:
  epochs: 3
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
  schedule: {name: multistep, milestones: [2], gamma: 0.1}
  eval_every: 1
"""

# Epochs each method trains alone: dense 3, pcn 3, magnitude 3 + 1, lottery 3 + 2 levels of
# 2, lowrank at 1: 3, lowrank at the end: 3 + 1.
ALONE = {"dense": 3, "pcn": 3, "magnitude": 4, "lottery": 7, "lowrank": 7}
# In suite order with sharing: dense trains 0→3; pcn 0→1 and its own 1→3; magnitude reuses
# 3 and fine-tunes 1; lottery reuses 1 and 3 and trains its 2 levels of 2; lowrank at 1 reuses 1
# and trains 2; lowrank at the end reuses 3 and fine-tunes 1.
SHARED = {"dense": 3, "pcn": 3, "magnitude": 1, "lottery": 4, "lowrank": 3}


def _run(loaded, host, out, share):
    summary = Runner(loaded, host, output=out, metering=False, share=share).run()
    assert not summary.failed, summary.failed
    with sqlite3.connect(out / "results.db") as db:
        results = pd.read_sql_query("SELECT * FROM results ORDER BY cell_id, idx", db)
        epochs = pd.read_sql_query("SELECT * FROM epochs ORDER BY cell_id, idx", db)
        phases = pd.read_sql_query("SELECT * FROM phases ORDER BY cell_id, idx", db)
        methods = dict(db.execute("SELECT cell_id, method FROM cells"))
    return results, epochs, phases, methods


def _incurred_epochs(phases: pd.DataFrame, methods: dict[str, str]) -> dict[str, float]:
    trained = phases[(phases.kind == "train") & (phases.reused == 0)]
    steps = (trained.end_step - trained.start_step).groupby(trained.cell_id).sum()
    out: dict[str, float] = {}
    for cell, n in steps.items():
        out[methods[cell]] = out.get(methods[cell], 0) + n / 4  # 4 steps per epoch
    return out


@pytest.fixture
def suite(host, write_suite):
    return load_suite(write_suite(SUITE), host)


def test_shared_and_unshared_runs_store_identical_results_for_less_training(suite, host, tmp_path):
    shared = _run(suite, host, tmp_path / "shared", share=True)
    alone = _run(suite, host, tmp_path / "alone", share=False)
    same = ["accuracy", "test_loss", "params", "density", "step", "epochs_trained", "macs"]
    keys = ["cell_id", "idx", *same]
    pd.testing.assert_frame_equal(shared[0][keys], alone[0][keys])
    cols = ["cell_id", "idx", "phase", "epoch", "step", "train_loss", "test_accuracy", "lr"]
    pd.testing.assert_frame_equal(shared[1][cols], alone[1][cols])
    assert _incurred_epochs(alone[2], alone[3]) == ALONE
    assert _incurred_epochs(shared[2], shared[3]) == SHARED
    assert sum(SHARED.values()) == 14 and sum(ALONE.values()) == 24
    reused = shared[0].groupby(shared[0].cell_id.map(shared[3])).trunk_reused_epochs.max()
    assert reused.to_dict() == {"dense": 0, "pcn": 0, "magnitude": 3, "lottery": 3, "lowrank": 3}
    assert (alone[0].trunk_reused_epochs == 0).all()
    assert (alone[0].incurred_time_s == alone[0].train_time_s).all()
    lot = shared[0][shared[0].cell_id.map(shared[3]) == "lottery"]
    assert (lot.incurred_time_s < lot.train_time_s).all()
    assert sorted(p.name for p in (tmp_path / "shared" / "trunk").glob("*/step_*.pt")) == [
        "step_12.pt",
        "step_4.pt",
    ]
    assert not (tmp_path / "alone" / "trunk").exists()


def test_branched_models_equal_the_unshared_ones_exactly(suite, host, tmp_path):
    cells = suite.cells
    data = host.datasets.get("synthetic").load(cells[0].dataset.params)
    cache = TrunkCache(tmp_path / "trunk", "t")
    for cell in cells:
        alone = run_method(cell, host, data, "cpu")
        shared = run_method(cell, host, data, "cpu", trunk=cache)
        a, b = alone.model.state_dict(), shared.model.state_dict()
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), (cell.label, name)
        assert [r["accuracy"] for r in alone.results] == [r["accuracy"] for r in shared.results]
        assert alone.steps_trained == shared.steps_trained


def test_a_changed_model_or_rng_leaves_the_trunk(suite, host, tmp_path):
    cell = suite.cells[0]
    data = host.datasets.get("synthetic").load(cell.dataset.params)
    cache = TrunkCache(tmp_path / "trunk", "t")
    session = run_method(cell, host, data, "cpu", trunk=cache)  # dense: caches step 12
    assert session.on_trunk
    with torch.no_grad():
        next(session.model.parameters()).mul_(0.5)  # an edit outside train()
    assert not session.on_trunk
    session = run_method(cell, host, data, "cpu", trunk=cache)
    torch.rand(1)
    assert not session.on_trunk


def test_trunk_key_ignores_the_method_only():
    config = {"dataset": {"name": "d"}, "model": {"name": "m"}, "method": {"name": "a"}, "seed": 0}
    other = {**config, "method": {"name": "b"}}
    assert trunk_key(config, v="1") == trunk_key(other, v="1")
    assert trunk_key(config, v="1") != trunk_key({**config, "seed": 1}, v="1")
    assert trunk_key(config, v="1") != trunk_key(config, v="2")


def test_clip_segments_prorates_a_cut_segment():
    segs = [Segment(0, 4, 2.0, 1.0), Segment(4, 12, 8.0, 4.0)]
    clipped = clip_segments(segs, 2, 8)
    assert [(s.start_step, s.end_step, s.wall_s, s.cpu_s) for s in clipped] == [
        (2, 4, 1.0, 0.5),
        (4, 8, 4.0, 2.0),
    ]


def test_cache_lookup_picks_the_latest_state_up_to_the_target(tmp_path):
    cache = TrunkCache(tmp_path, "k")
    cache.dir.mkdir(parents=True)
    for step in (4, 12):
        (cache.dir / f"step_{step}.pt").write_bytes(b"")
    (cache.dir / ".step_8.x.tmp").write_bytes(b"")  # a write in progress is not a state
    assert cache.best(0, 8) == 4
    assert cache.best(4, 8) is None
    assert cache.best(4, 12) == 12


def test_no_share_flag_trains_without_a_trunk_cache(write_suite, tmp_path):
    from pcnbench.cli import main

    suite = str(write_suite(SUITE))
    for flag, out in (([], "shared"), (["--no-share"], "alone")):
        args = ["run", suite, "--output", str(tmp_path / out), "--only", "dense"]
        assert main([*args, "--quiet", "--no-report", "--no-meter", *flag]) == 0
    assert len(list((tmp_path / "shared" / "trunk").glob("*/step_12.pt"))) == 1
    assert not (tmp_path / "alone" / "trunk").exists()


def test_a_trunk_state_in_another_format_is_trained_instead(suite, host, tmp_path):
    cell = suite.cells[0]
    data = host.datasets.get("synthetic").load(cell.dataset.params)
    cache = TrunkCache(tmp_path / "trunk", "t")
    cache.dir.mkdir(parents=True)
    torch.save({"step": 4}, cache.dir / "step_4.pt")  # not a TrunkState
    alone = run_method(cell, host, data, "cpu")
    shared = run_method(cell, host, data, "cpu", trunk=cache)
    a, b = alone.model.state_dict(), shared.model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert shared.results[-1]["trunk_reused_epochs"] == 0
