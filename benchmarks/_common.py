"""Helpers the benchmarks share: timed pairs, pcnbench runs, suites, models and data."""

from __future__ import annotations

import functools
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pcnbench.api import EpochPlan

ROOT = Path(__file__).resolve().parent.parent
# recipe keys for the fast GPU paths; a recipe without them cannot run the "fastest" settings
FAST_KEYS = ("precision", "channels_last", "compile")
FASTEST = {"precision": "bf16", "channels_last": True, "compile": "reduce-overhead"}
EAGER = {"precision": "fp32", "channels_last": False, "compile": False}
# figures one benchmark measures and a later one uses (test_packing → test_projection)
MEASURED: dict[str, float] = {}
# what pcnbench reads to fit its output to a terminal (a width set shortens the cell ids that
# `validate` prints); GNU readline exports both to the children of a Python that loaded it,
# as pytest can, so a benchmark would see a layout that depends on how it was started
TERMINAL_SIZE = ("COLUMNS", "LINES")


def sync(device: Any) -> None:
    """Wait for queued GPU work so the clock reads include it."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def paired(
    benchmark: Any,
    target: Callable[[], Any],
    baseline: Callable[[], Any],
    rounds: int,
    device: Any = "cpu",
    warmup: bool = True,
) -> tuple[float, float]:
    """Benchmark `target` with `baseline` timed just before each round; (median target, baseline).

    Alternating rounds: a slow spell on a shared machine hits both alike. One untimed warm-up
    of each first (allocator, kernels) unless `warmup` is False. The medians come from this
    function's own clock, so they hold with --benchmark-disable too.
    """
    target_times: list[float] = []
    base_times: list[float] = []

    def clocked(fn: Callable[[], Any], into: list[float]) -> Callable[[], Any]:
        def run() -> Any:
            sync(device)
            start = time.perf_counter()
            out = fn()
            sync(device)
            into.append(time.perf_counter() - start)
            return out

        return run

    if warmup:
        baseline(), target()
    benchmark.pedantic(
        clocked(target, target_times),
        setup=clocked(baseline, base_times),
        rounds=rounds,
        iterations=1,
    )
    return statistics.median(target_times), statistics.median(base_times)


def child_env(env: Mapping[str, str] | None = None, width: int | None = None) -> dict[str, str]:
    """`env` (default os.environ) for a pcnbench child: no COLUMNS/LINES unless `width` is given.

    Without them the child lays its output out as for a pipe, whatever terminal (or readline)
    started the benchmarks; `width` sets COLUMNS for a benchmark that wants a terminal's layout.
    """
    out = {k: v for k, v in (os.environ if env is None else env).items() if k not in TERMINAL_SIZE}
    if width is not None:
        out["COLUMNS"] = str(width)
    return out


def pcnbench_run(
    suite: str | Path,
    out: str | Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    width: int | None = None,
) -> tuple[float, str]:
    """Wall seconds and stderr of `pcnbench run suite --output out --quiet *extra`.

    The child gets `env` (default os.environ) through `child_env`: COLUMNS only with `width`.
    """
    cmd = [sys.executable, "-m", "pcnbench.cli", "run", str(suite), "--output", str(out)]
    cmd += ["--quiet", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=child_env(env, width))
    wall = time.perf_counter() - start
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stderr


def short_quickstart(path: Path) -> Path:
    """The quickstart cut down for short CPU runs: one seed, 6 epochs, one point per method.

    It keeps every method, so masked and reduced rows, trunk reuse and metering all happen. Its
    claims are left out: they name grid points the cut-down suite no longer has.
    """
    suite = yaml.safe_load((ROOT / "suites" / "quickstart.yaml").read_text())
    suite["name"] = "quickstart-short"
    suite.pop("claims", None)
    suite["seeds"] = [0]
    suite["recipe"].update(epochs=6, eval_every=3)
    suite["recipe"]["schedule"]["milestones"] = [4, 5]
    for method in suite["methods"]:
        if not isinstance(method, dict):
            continue
        params = method["params"]
        for key, value in list(params.items()):
            if isinstance(value, list):
                params[key] = value[0]
        if "at_epoch" in params:
            params["at_epoch"] = 2
        if "finetune_epochs" in params:
            params["finetune_epochs"] = 2
        if "levels" in params:
            params["levels"] = 2
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def fast_keys_supported() -> bool:
    """Whether the recipe has the precision / channels_last / compile keys."""
    from pcnbench.recipe import Recipe

    return all(key in Recipe.model_fields for key in FAST_KEYS)


def cifar_recipe_fields(epochs: int) -> dict[str, Any]:
    """The cifar10 suite's recipe (batch 128, SGD, crop+flip) for `epochs`, as suite keys."""
    return {
        "epochs": epochs,
        "batch_size": 128,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "weight_decay": 1e-4,
        "schedule": {"name": "constant"},
        "augmentation": {"crop_padding": 4, "flip": True},
        "eval_every": 0,
    }


def cifar_recipe(epochs: int, settings: dict[str, Any] | None = None, **extra: Any) -> Any:
    """The cifar10 suite's recipe (batch 128, SGD, crop+flip) for `epochs`, with `settings`."""
    from pcnbench.recipe import Recipe

    fields = cifar_recipe_fields(epochs)
    fields.update(extra)
    if settings and fast_keys_supported():
        fields.update(settings)
    return Recipe(**fields)


@functools.cache
def host() -> Any:
    """The installed plugins (loaded once)."""
    from pcnbench.manager import load_plugins

    return load_plugins()


def synthetic_cifar(plugins: Any, n_train: int, n_test: int = 1000) -> Any:
    """CIFAR-shaped synthetic data (3×32×32, 10 classes) from the `synthetic` dataset plugin."""
    plugin = plugins.datasets.get("synthetic")
    params = plugin.Params(n_train=n_train, n_test=n_test, shape=(3, 32, 32), classes=10)
    return plugin.load(params)


def resnet(plugins: Any, width: int, depth: int = 20) -> Any:
    """A fresh CIFAR ResNet from the `resnet` model plugin."""
    from pcnbench.contracts import DataInfo

    plugin = plugins.models.get("resnet")
    return plugin.build(plugin.Params(depth=depth, width=width), DataInfo((3, 32, 32), 10))


def method_plan(cell: Any, train_samples: int = 50_000) -> EpochPlan:
    """The epochs a cell trains, from its method's own `plan_epochs` (as validate shows them)."""
    recipe = cell.recipe
    n = train_samples - round(train_samples * recipe.validation_split)
    method = host().methods.get(cell.method.name)
    plan = method.plan_epochs(cell.method.params, recipe, math.ceil(n / recipe.batch_size))
    if plan is None:
        raise ValueError(f"method {cell.method.name!r} does not plan its epochs")
    return plan
