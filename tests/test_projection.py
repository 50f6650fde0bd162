"""The GPU-hour projection of a plan: epochs per cell, shared trunks, packing (no timing here)."""

from __future__ import annotations

import pytest

from pcnbench.api import EpochPlan
from pcnbench.projection import (
    GridPoint,
    cells_per_gpu,
    epoch_seconds_from_steps,
    grid_point,
    grid_points,
    project_plan,
)
from pcnbench.suite import load_suite

SUITE = """\
name: proj
seeds: [0, 1]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32}
models:
  - name: mlp
    params: {width: [8, 16], depth: 1}
methods:
  - dense
  - name: early
    params: {at_epoch: [1, 2]}
recipe:
  epochs: 10
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1}
"""

W8 = GridPoint("synthetic(n_test=32,n_train=64)", "mlp(depth=1,width=8)")
W16 = GridPoint("synthetic(n_test=32,n_train=64)", "mlp(depth=1,width=16)")
SECONDS = {W8: 36.0, W16: 72.0}  # 100 epochs of W8 are one hour


@pytest.fixture
def cells(host, write_suite):
    """2 widths × (dense + early at 1 and 2) × 2 seeds = 12 cells."""
    return load_suite(write_suite(SUITE), host).cells


def plan(cell) -> EpochPlan:
    """Dense: the whole trunk; early: the trunk up to at_epoch, then the rest alone."""
    if cell.method.name == "dense":
        return EpochPlan(trunk=cell.recipe.epochs)
    at = cell.method.params.at_epoch
    return EpochPlan(trunk=at, own=cell.recipe.epochs - at)


def test_grid_points_leave_out_defaults_and_name_each_width(cells):
    assert grid_points(cells) == [W8, W16]
    assert grid_point(cells[0]) == W8
    assert str(W8) == "synthetic(n_test=32,n_train=64) · mlp(depth=1,width=8)"


def test_without_a_plan_each_cell_counts_recipe_epochs_and_is_a_lower_bound(cells):
    got = project_plan(cells, SECONDS)
    # 6 cells of each width × 10 epochs: 60 × 36 s + 60 × 72 s = 1.8 h
    assert got.epochs == got.unshared_epochs == 120
    assert got.gpu_hours == pytest.approx(1.8)
    assert got.at_least and got.counted_from_recipe == 12
    assert got.hours_by_point == pytest.approx({W8: 0.6, W16: 1.2})
    assert "at least 1.80 GPU-hours for 12 cells" in got.summary()
    assert "fine-tuning and shared trunks are not counted" in got.summary()


def test_shared_trunks_train_each_stop_once_per_group(cells):
    got = project_plan(cells, SECONDS, epochs_of=plan)
    # per (width, seed) group: dense trains 10; early@1 trains 1 (no state at 1) + 9 own;
    # early@2 resumes from 1, trains 1 more + 8 own: 10 + 10 + 9 = 29 epochs, vs 30 alone
    assert got.unshared_epochs == 4 * 30
    assert got.epochs == 4 * 29
    assert sum(got.epochs_by_cell.values()) == got.epochs
    dense = [c.id for c in cells if c.method.name == "dense"]
    assert [got.epochs_by_cell[i] for i in dense] == [10.0] * 4
    assert not got.at_least
    assert got.serial_hours == pytest.approx(2 * 29 * (36 + 72) / 3600)
    unshared = project_plan(cells, SECONDS, epochs_of=plan, share=False)
    assert unshared.epochs == unshared.unshared_epochs == 120
    assert unshared.gpu_hours == pytest.approx(got.unshared_hours)


def test_a_stop_reached_by_an_earlier_cell_is_restored_not_trained(cells):
    # the rewind pattern: a short stop, then the end another cell already reached
    def rewind(cell) -> EpochPlan:
        if cell.method.name == "dense":
            return EpochPlan(trunk=10)
        return EpochPlan(trunk=(0.5, 10), own=20)

    got = project_plan(cells, SECONDS, epochs_of=rewind)
    # per group: dense 10; first early: 0.5 + 0 + 20; second: 0 + 0 + 20 → 50.5
    assert got.epochs == pytest.approx(4 * 50.5)
    assert got.unshared_epochs == pytest.approx(4 * 70)


def test_cells_without_a_plan_fall_back_to_recipe_epochs(cells):
    got = project_plan(
        cells, SECONDS, epochs_of=lambda c: plan(c) if c.method.name == "dense" else None
    )
    assert got.counted_from_recipe == 8
    assert got.at_least
    assert got.epochs == 4 * 10 + 8 * 10


def test_packing_divides_by_cells_per_gpu_times_the_efficiency(cells):
    alone = project_plan(cells, SECONDS, epochs_of=plan)
    ideal = project_plan(cells, SECONDS, epochs_of=plan, gpus=0.25)
    assert ideal.cells_per_gpu == 4
    assert ideal.gpu_hours == pytest.approx(alone.gpu_hours / 4)
    assert not ideal.packing_measured
    assert "assuming perfect packing (efficiency 1, unmeasured)" in ideal.summary()
    measured = project_plan(cells, SECONDS, epochs_of=plan, gpus=0.25, packing_efficiency=0.5)
    assert measured.gpu_hours == pytest.approx(alone.gpu_hours / 2)
    assert "packing efficiency 0.50 measured" in measured.summary()
    # a cell holding two GPUs is charged both
    assert project_plan(cells, SECONDS, epochs_of=plan, gpus=2).gpu_hours == pytest.approx(
        2 * alone.gpu_hours
    )
    # no packing: an efficiency does not apply
    assert project_plan(
        cells, SECONDS, epochs_of=plan, gpus=1, packing_efficiency=0.5
    ).gpu_hours == pytest.approx(alone.gpu_hours)


@pytest.mark.parametrize(
    ("gpus", "per_gpu"), [(None, 1), (0, 1), (1, 1), (2, 1), (0.5, 2), (0.3, 3), (0.25, 4)]
)
def test_cells_per_gpu_as_the_executors_pack(gpus, per_gpu):
    assert cells_per_gpu(gpus) == per_gpu


def test_missing_grid_points_and_bad_inputs_are_refused(cells):
    with pytest.raises(KeyError, match=r"mlp\(depth=1,width=16\)"):
        project_plan(cells, {W8: 1.0})
    with pytest.raises(ValueError, match="positive"):
        project_plan(cells, SECONDS, packing_efficiency=0)
    with pytest.raises(ValueError, match="non-negative"):
        EpochPlan(trunk=-1)


def test_epoch_seconds_scale_step_time_by_steps_per_epoch():
    # CIFAR-10: 50,000 samples at batch 128 are 391 steps (the last one smaller)
    assert epoch_seconds_from_steps(0.01, 50_000, 128) == pytest.approx(3.91)
    assert epoch_seconds_from_steps(0.01, 50_000, 128, validation_split=0.1) == pytest.approx(3.52)


def test_dry_run_projects_the_plan_from_epoch_times_measured_here(write_suite, tmp_path, capsys):
    from pcnbench.cli import main
    from tests.conftest import BASE_SUITE

    suite = write_suite(BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]"))
    out = tmp_path / "out"
    args = ["run", str(suite), "--dry-run", "--project", "--device", "cpu", "--output", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "projected " in text and " hours on cpu for 2 cells; 4 epochs" in text
    point = "synthetic(n_test=32,n_train=64) · mlp(depth=1,width=8)"
    assert f"  {point}: " in text and "4 steps × " in text  # 64 samples / batch 16
    assert not out.exists()  # a dry run writes nothing


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda_available(), reason="plans a GPU suite where there is no GPU")
def test_a_dry_run_of_a_gpu_suite_plans_on_a_machine_without_one(write_suite, tmp_path, capsys):
    from pcnbench.cli import main
    from tests.conftest import BASE_SUITE

    suite = write_suite(BASE_SUITE + "device: cuda\n")
    assert main(["run", str(suite), "--dry-run", "--output", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "1 to run, 0 already done" in text and "projected" not in text
