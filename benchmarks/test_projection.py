"""Projected GPU-hours of suites/cifar10.yaml from per-epoch times measured on the device.

For each (dataset, model) grid point of the suite, the cell's model (from its plugin) trains a
few timed steps on CIFAR-shaped synthetic data (cifar10 is not downloaded: only the shape and
the 50,000-image epoch matter) with the fastest recipe settings, after untimed warm-up steps;
the step time scaled to an epoch feeds `pcnbench.projection.project_plan` with the built-in
methods' epoch plans (`_common.method_plan`), trunk sharing, and packing at 4 cells per GPU with
the efficiency `test_packing` measured in this session (else 1, said so).
Target on GPU: ≤ 8 GPU-hours with the fastest settings and packing.
"""

from __future__ import annotations

import time

from _common import (
    FASTEST,
    MEASURED,
    ROOT,
    cifar_recipe,
    fast_keys_supported,
    host,
    method_plan,
    sync,
    synthetic_cifar,
)

from pcnbench.contracts import DataInfo
from pcnbench.projection import epoch_seconds_from_steps, grid_point, grid_points, project_plan
from pcnbench.session import Session
from pcnbench.suite import load_suite

CIFAR_TRAIN = 50_000
TARGET_H = 8.0


def step_seconds(plugins, cell, device: str, warmup: int, steps: int, n: int) -> float:
    """Seconds of one training step of the cell's model with the fastest settings."""
    settings = dict(FASTEST)
    if not device.startswith("cuda"):
        settings["compile"] = False
    plugin = plugins.models.get(cell.model.name)
    model = plugin.build(cell.model.params, DataInfo((3, 32, 32), 10))
    recipe = cifar_recipe(1, settings)
    session = Session(
        model, synthetic_cifar(plugins, n), recipe, seed=0, device=device, measure_inference=False
    )
    session.train(until=f"{warmup}it")
    sync(device)
    start = time.perf_counter()
    session.train(until=f"{warmup + steps}it")
    sync(device)
    return (time.perf_counter() - start) / steps


def test_projection_cifar10(benchmark, figures, device, scale):
    """Projected GPU-hours of the cifar10 suite (target ≤ 8 on GPU, fastest + packing)."""
    warmup, steps = scale.pick(smoke=(1, 1), short=(2, 3), full=(30, 60))
    plugins = host()
    loaded = load_suite(ROOT / "suites" / "cifar10.yaml", plugins)
    cells = loaded.cells
    first = {grid_point(c): c for c in reversed(cells)}
    n = 128 * (warmup + steps + 1)  # enough images for the steps, within one epoch
    seconds = {}
    for point in grid_points(cells):
        cell = first[point]
        step = step_seconds(plugins, cell, device, warmup, steps, n)
        seconds[point] = epoch_seconds_from_steps(step, CIFAR_TRAIN, cell.recipe.batch_size)
        figures(f"epoch_s {point.model}", seconds[point], " s")
    efficiency = MEASURED.get("packing_efficiency")
    alone = project_plan(cells, seconds, gpus=loaded.suite.resources.gpus, epochs_of=method_plan)
    packed = benchmark(
        project_plan,
        cells,
        seconds,
        gpus=0.25,
        packing_efficiency=efficiency,
        epochs_of=method_plan,
    )
    figures("fast recipe keys", str(fast_keys_supported()))
    figures("gpu_hours as the suite says (resources.gpus)", alone.gpu_hours, " h")
    figures("unshared serial gpu_hours", alone.unshared_hours, " h")
    figures(
        "gpu_hours packed 4 per GPU",
        packed.gpu_hours,
        " h",
        target=f"≤ {TARGET_H:g} h on GPU",
        ok=packed.gpu_hours <= TARGET_H if device.startswith("cuda") else None,
    )
    figures("projection", packed.summary())
    # packing pays only where it measured faster than one at a time (on 2 CPU cores it is not)
    assert packed.gpu_hours > 0 and alone.gpu_hours > 0
    assert not packed.at_least
