"""Packed against single: images/s of 4 cells sharing one GPU (`resources: {gpus: 0.25}`,
`--jobs 4`) against one cell alone (GPU figure).

Two runs of `pcnbench run` on CIFAR-shaped synthetic data, ResNet-20 width 1, dense, the
fastest recipe settings: one seed alone, then four seeds packed. Throughput counts epochs after
the first (which holds compile and warm-up): a cell's images/s is n_train over its median epoch
seconds, and the packed figure sums the four cells' (they train side by side). Figures:
packed/single images/s and the packing efficiency (packed / (4 × single)) that
`benchmarks/test_projection.py` uses. Whether the CUDA MPS daemon ran is recorded
(PCNBENCH_MPS=1 from gpu_all.sh --mps); the single run is metered and its energy is
printed (NVML on a GPU). --smoke: 256 images, 2 epochs, on cpu too.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
from pathlib import Path

import pytest
import yaml
from _common import FASTEST, MEASURED, cifar_recipe_fields, fast_keys_supported, pcnbench_run

CELLS = 4


def suite(path: Path, seeds: int, n_train: int, epochs: int, device: str) -> Path:
    """A dense ResNet-20 suite of `seeds` cells, packed 4 to a GPU when more than one."""
    recipe = cifar_recipe_fields(epochs)
    if fast_keys_supported():
        recipe.update(FASTEST)
        if not device.startswith("cuda"):
            recipe["compile"] = False
    text = {
        "name": path.stem,
        "seeds": list(range(seeds)),
        "datasets": [
            {
                "name": "synthetic",
                "params": {
                    "n_train": n_train,
                    "n_test": 1000,
                    "shape": [[3, 32, 32]],
                    "classes": 10,
                },
            }
        ],
        "models": [{"name": "resnet", "params": {"depth": 20, "width": 1}}],
        "methods": ["dense"],
        "recipe": recipe,
        "device": device,
        "resources": {"gpus": 1 / CELLS if seeds > 1 else 1},
    }
    path.write_text(yaml.safe_dump(text, sort_keys=False))
    return path


def rates(db: Path, n_train: int) -> list[float]:
    """Images/s of each cell: n_train over its median epoch seconds after the first epoch."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT cell_id, epoch, seconds FROM epochs WHERE epoch > 1").fetchall()
    by_cell: dict[str, list[float]] = {}
    for cell, _epoch, seconds in rows:
        by_cell.setdefault(cell, []).append(seconds)
    return [n_train / statistics.median(s) for s in by_cell.values()]


@pytest.mark.gpu_only
def test_packed_vs_single(benchmark, figures, device, scale, tmp_path: Path):
    """packed/single images/s of 4 cells on one GPU against one cell alone."""
    n_train, epochs = scale.pick(smoke=256, short=256, full=50_000), scale.pick(2, 2, 3)
    single = suite(tmp_path / "single.yaml", 1, n_train, epochs, device)
    packed = suite(tmp_path / "packed.yaml", CELLS, n_train, epochs, device)
    extra = ["--no-report", "--no-meter"]
    pcnbench_run(single, tmp_path / "single", "--no-report")  # metered: its energy figures
    benchmark.pedantic(
        pcnbench_run,
        args=(packed, tmp_path / "packed", *extra, "--jobs", str(CELLS)),
        rounds=1,
        iterations=1,
    )
    alone = rates(tmp_path / "single" / "results.db", n_train)
    together = rates(tmp_path / "packed" / "results.db", n_train)
    speedup = sum(together) / alone[0]
    efficiency = speedup / CELLS
    MEASURED["packing_efficiency"] = efficiency
    figures("mps", os.environ.get("PCNBENCH_MPS", "0"))
    figures("single_images_per_s", alone[0])
    figures("packed_images_per_s", sum(together))
    with sqlite3.connect(tmp_path / "single" / "results.db") as con:
        energy = con.execute("SELECT train_energy_j, energy_method FROM results").fetchone()
    figures("single cell train_energy_j (method)", f"{energy[0]} ({energy[1]})")
    figures("packed/single", speedup)
    figures("packing_efficiency", efficiency)
    assert len(alone) == 1 and len(together) == CELLS
