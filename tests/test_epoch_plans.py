"""Each method's epoch plan (what validate, --dry-run and the projection show) is what it trains."""

from __future__ import annotations

import csv
import io
import math

from pcnbench.cli import main
from pcnbench.suite import load_suite

SUITE = """\
name: ep
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32}
models:
  - name: mlp
    params: {width: 8, depth: 1}
methods:
  - dense
  - {name: pcn, params: {at_epoch: 1, keep: f0.5}}
  - {name: magnitude, params: {sparsity: 0.5, finetune_epochs: 2}}
  - {name: magnitude, params: {sparsity: 0.5, schedule: gradual, start_epoch: 1, end_epoch: 2}}
  - {name: lottery, params: {levels: 2, rewind: 3it}}
  - {name: lottery, params: {levels: 1, rewind: 1ep}}
  - {name: lowrank, params: {rank: r0.5, finetune_epochs: 2}}
  - {name: lowrank, params: {rank: r0.5, at_epoch: 1}}
recipe:
  epochs: 3
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1}
"""


def test_every_built_in_method_trains_the_epochs_it_plans(host, write_suite, tmp_path, capsys):
    file = write_suite(SUITE)
    out = tmp_path / "out"
    args = ["run", str(file), "--output", str(out), "--no-share", "--no-report", "--no-meter"]
    assert main([*args, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["results", str(out), "--format", "csv"]) == 0
    trained: dict[str, float] = {}
    for row in csv.DictReader(io.StringIO(capsys.readouterr().out)):
        cell = row["cell_id"]
        trained[cell] = max(trained.get(cell, 0.0), float(row["epochs_trained"]))
    loaded = load_suite(file, host)
    steps_per_epoch = math.ceil(64 / 16)
    for cell in loaded.cells:
        method = host.methods.get(cell.method.name)
        plan = method.plan_epochs(cell.method.params, cell.recipe, steps_per_epoch)
        assert plan is not None and plan.why, cell.label
        assert plan.total == trained[cell.id], (cell.label, plan, trained[cell.id])


def test_validate_shows_each_cells_epochs_and_the_defaults_behind_them(write_suite, capsys):
    file = write_suite(
        SUITE.replace("finetune_epochs: 2}}\n  - {name: magnitude", "}}\n  - {name: magnitude", 1)
    )
    assert main(["validate", str(file)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"suite 'ep' ({file}): 8 cells, 44 epochs planned"
    assert "  magnitude: 13 = 3 + 10 fine-tune (magnitude.finetune_epochs default)" in lines
    assert any(line.endswith("  magnitude  13 ep") for line in lines)  # id, short label, epochs
    assert "  pcn: 3 = 1 dense + 2 transformed (pcn.at_epoch 1)" in lines
    cell_lines = [line for line in lines if line[:16].isalnum() and line[16:18] == "  "]
    assert len(cell_lines) == 8 and all(len(line) <= 80 for line in cell_lines)
