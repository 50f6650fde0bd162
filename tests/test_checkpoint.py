"""Cell checkpoints: a cell cut short at any point and resumed ends with the same numbers."""

from __future__ import annotations

import math

import pytest
import torch

from pcnbench.checkpoint import CellCheckpoint
from pcnbench.execution import run_method, set_determinism
from pcnbench.suite import load_suite
from pcnbench.trunk import TrunkCache

# Three epochs of 4 steps; every built-in method, each with several train() calls.
SUITE = """\
name: ckpt
seeds: [0]
deterministic: true
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
  - name: magnitude
    params: {sparsity: 0.5, schedule: gradual, start_epoch: 0, end_epoch: 2, frequency: 3}
  - name: lottery
    params: {levels: 2, rate: 0.5, rewind: 1ep}
  - name: lowrank
    params: {at_epoch: end, rank: r0.5, finetune_epochs: 1}
recipe:
  epochs: 3
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
  schedule: {name: multistep, milestones: [2], gamma: 0.1}
  eval_every: 1
"""

# Figures that measure this process's clock, not the cell's numbers.
TIMING = {
    "train_time_s",
    "incurred_time_s",
    "transform_time_s",
    "eval_time_s",
    "latency_ms",
    "throughput_sps",
    "resumed",
    "energy_note",  # a resumed cell says which seconds its energy figures miss
}


class KilledError(Exception):
    """Stands in for the process dying at a progress report."""


@pytest.fixture(scope="module")
def cells(host, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "suite.yaml"
    path.write_text(SUITE, encoding="utf-8")
    loaded = load_suite(path, host)
    set_determinism(True, "cpu")
    return loaded.cells


@pytest.fixture(autouse=True)
def trained_batches(monkeypatch):
    """Count the batches this process really trains (a resume should skip most of them)."""
    from pcnbench.session import Session

    count = [0]
    original = Session._train_epoch

    def counting(self, phase, epoch, first, last):
        count[0] += last - first
        return original(self, phase, epoch, first, last)

    monkeypatch.setattr(Session, "_train_epoch", counting)
    return count


def _run(cell, host, checkpoint=None, kill_at=None, trunk=None):
    data = host.datasets.get(cell.dataset.name).load(cell.dataset.params)
    calls = [0]

    def progress(step: int, total: int) -> None:
        calls[0] += 1
        if kill_at is not None and calls[0] == kill_at:
            raise KilledError

    return run_method(
        cell, host, data, "cpu", on_progress=progress, checkpoint=checkpoint, trunk=trunk
    ), calls[0]


def _numbers(session):
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in session.results]
    records = [(r.phase, r.epoch, r.step, r.train_loss, r.test_accuracy) for r in session.records]
    return rows, records, {k: v.clone() for k, v in session.model.state_dict().items()}


def _same(a, b) -> None:
    rows_a, records_a, state_a = a
    rows_b, records_b, state_b = b
    assert len(rows_a) == len(rows_b)
    for x, y in zip(rows_a, rows_b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            same = x[key] == y[key] or (
                isinstance(x[key], float) and math.isnan(x[key]) and math.isnan(y[key])
            )
            assert same, (key, x[key], y[key])
    assert records_a == records_b
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


METHODS = ["dense", "pcn", "magnitude-oneshot", "magnitude-gradual", "lottery", "lowrank-end"]


@pytest.mark.parametrize("index", range(len(METHODS)), ids=METHODS)
def test_a_cell_killed_anywhere_resumes_to_the_same_numbers(
    cells, host, tmp_path, index, trained_batches
):
    cell = cells[index]
    whole, reports = _run(cell, host)
    whole_batches = trained_batches[0]
    reference = _numbers(whole)
    assert reports > 4
    resumes = 0
    # kill at a third, at two thirds, and at the last progress report of the whole run
    for kill_at in sorted({max(1, reports // 3), 2 * reports // 3, reports}):
        directory = tmp_path / f"{cell.id}-{kill_at}"
        checkpoint = CellCheckpoint(directory, "k", every_s=0)
        with pytest.raises(KilledError):
            _run(cell, host, checkpoint, kill_at=kill_at)
        resumed_checkpoint = CellCheckpoint(directory, "k", every_s=0)
        before = trained_batches[0]
        resumed, _ = _run(cell, host, resumed_checkpoint)
        _same(_numbers(resumed), reference)
        if kill_at == reports:  # killed in the last epoch: at most two epochs are trained again
            assert trained_batches[0] - before <= 2 * 4 < whole_batches
        # rows recorded before the kill come back as they were; the last one is recorded after
        assert resumed.results[-1]["resumed"] == resumed_checkpoint.resumed
        resumes += resumed_checkpoint.resumed
    assert resumes >= 2  # the kills after the first epoch boundary resumed from a checkpoint


def test_killed_twice_once_during_the_replay_still_ends_the_same(cells, host, tmp_path):
    cell = next(c for c in cells if c.method.name == "lottery")
    whole, reports = _run(cell, host)
    directory = tmp_path / "twice"
    with pytest.raises(KilledError):
        _run(cell, host, CellCheckpoint(directory, "k", every_s=0), kill_at=reports - 2)
    with pytest.raises(KilledError):
        _run(cell, host, CellCheckpoint(directory, "k", every_s=0), kill_at=2)
    resumed, _ = _run(cell, host, CellCheckpoint(directory, "k", every_s=0))
    _same(_numbers(resumed), _numbers(whole))


def test_resume_with_the_shared_trunk_charges_the_interrupted_time(cells, host, tmp_path):
    cell = next(c for c in cells if c.method.name == "pcn")
    whole, reports = _run(cell, host, trunk=TrunkCache(tmp_path / "trunk-a", "t"))
    directory = tmp_path / "pcn"
    with pytest.raises(KilledError):
        _run(
            cell,
            host,
            CellCheckpoint(directory, "k", every_s=0),
            kill_at=reports - 1,
            trunk=TrunkCache(tmp_path / "trunk-b", "t"),
        )
    trunk = TrunkCache(tmp_path / "trunk-b", "t")
    resumed, _ = _run(cell, host, CellCheckpoint(directory, "k", every_s=0), trunk=trunk)
    _same(_numbers(resumed), _numbers(whole))
    (row,) = resumed.results
    assert row["train_time_s"] > 0
    # the phase cut short carries the seconds done before the kill, labelled as unmetered
    assert any(p.resumed_s > 0 for p in resumed.phases)
    assert "before an interruption" in row.get("energy_note", "")


def test_a_checkpoint_of_another_configuration_is_discarded(cells, host, tmp_path):
    cell = next(c for c in cells if c.method.name == "dense")
    directory = tmp_path / "stale"
    with pytest.raises(KilledError):
        _run(cell, host, CellCheckpoint(directory, "old-key", every_s=0), kill_at=5)
    fresh = CellCheckpoint(directory, "new-key", every_s=0)
    session, _ = _run(cell, host, fresh)
    assert not fresh.resumed
    assert not any(row["resumed"] for row in session.results)


def test_checkpoints_are_throttled_by_every_s(cells, host, tmp_path):
    cell = next(c for c in cells if c.method.name == "lottery")
    directory = tmp_path / "slow"
    _run(cell, host, CellCheckpoint(directory, "k", every_s=3600))
    assert not any(directory.glob("*.pt"))
    _run(cell, host, CellCheckpoint(tmp_path / "fast", "k", every_s=0))
    names = sorted(p.name for p in (tmp_path / "fast").glob("*.pt"))
    # one end state per train() call (dense to the rewind point, to the end, two levels)
    assert names[:4] == ["live.pt", "op_0.pt", "op_1.pt", "op_2.pt"]


def test_a_checkpoint_in_another_format_is_discarded(cells, host, tmp_path):
    cell = next(c for c in cells if c.method.name == "dense")
    whole, _ = _run(cell, host)
    directory = tmp_path / "foreign"
    directory.mkdir()
    (directory / "key.json").write_text('{"key": "k"}', encoding="utf-8")
    torch.save({"op": 0, "step": 12}, directory / "op_0.pt")  # not a CallState
    torch.save({"op": 0}, directory / "live.pt")
    checkpoint = CellCheckpoint(directory, "k", every_s=0)
    session, _ = _run(cell, host, checkpoint)
    _same(_numbers(session), _numbers(whole))
    assert not checkpoint.resumed
    assert not any(row["resumed"] for row in session.results)
