"""A synthetic results database shaped like a real suite's, for the report tests.

It holds dense, two PCN settings (with per-layer spectra), magnitude pruning (estimated energy
only), a three-level lottery run (one result row per level, rewinding in its epoch records),
a failed low-rank cell and a cell that never finished, over three seeds, plus a second model
with only dense and one PCN setting. Cells carry their settings as the suite wrote them, the
way `pcnbench.cells.Cell` does (`cell.method.raw`), and their labels are built from them.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pcnbench_plugins.dense as dense
import pcnbench_plugins.lottery as lottery
import pcnbench_plugins.lowrank as lowrank
import pcnbench_plugins.magnitude as magnitude
import pcnbench_plugins.pcn as pcn
import pcnbench_plugins.reporters as reporters
from pcnbench.manager import PluginHost, load_plugins
from pcnbench.store import Store

EPOCHS = 20
STEPS_PER_EPOCH = 10
DENSE_PARAMS = 272_474
DENSE_MACS = 40_800_000
SEEDS = (0, 1, 2)
R56_DENSE = {"dense_params": 855_770, "dense_macs": 125_000_000}

DENSE_ACC = {0: 0.917, 1: 0.915, 2: 0.919}
# Per-seed accuracy offsets from dense (the same seed), so paired deltas are known exactly.
OFFSETS = {
    "pcn_f025": {0: -0.002, 1: -0.001, 2: -0.003},
    "pcn_f05": {0: 0.001, 1: 0.000, 2: 0.002},
    "magnitude": {0: -0.012, 1: -0.010, 2: -0.014},
}
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "plugins/lowrank.py", line 10, in run\n'
    "RuntimeError: rank 0 leaves nothing to train"
)


def _spectrum(d: int) -> list[float]:
    return [float(math.exp(-i / 6.0)) for i in range(d)]


def pcn_layers(keep: float) -> list[dict[str, Any]]:
    """Per-layer records as the pcn plugin writes them (two layers of width 64 and 32)."""
    out = []
    for name, d in (("layer1.conv", 64), ("fc", 32)):
        eig = _spectrum(d)
        k = max(1, int(d * keep))
        out.append(
            {
                "name": name,
                "kind": "conv" if "conv" in name else "linear",
                "d": d,
                "k": k,
                "explained": sum(eig[:k]) / sum(eig),
                "spectrum": eig,
                "rule": f"f{keep:g}",
                "basis": name,
                "samples": 5000,
            }
        )
    return out


def _epochs(acc: float, restarts: int = 0, rewind: int = 0) -> list[dict[str, Any]]:
    records = []
    for segment in range(restarts + 1):
        start = 0 if segment == 0 else rewind
        for epoch in range(start + 1, EPOCHS + 1):
            evaluated = epoch % 5 == 0
            records.append(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "step": epoch * STEPS_PER_EPOCH,
                    "train_loss": 2.0 / epoch,
                    "test_accuracy": acc - 0.3 / epoch if evaluated else None,
                    "test_loss": 0.2 + 1.0 / epoch if evaluated else None,
                    "val_accuracy": None,
                    "lr": 0.1,
                    "seconds": 1.0,
                }
            )
    return records


def _phase(name: str, kind: str, start: int, end: int) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "wall_s": 1.0,
        "cpu_s": 1.0,
        "start_step": start,
        "end_step": end,
    }


def _result(
    params: int, macs: int, acc: float, time_s: float, seed: int, **extra: Any
) -> dict[str, Any]:
    row = {
        "accuracy": acc,
        "test_loss": 0.3,
        "val_accuracy": None,
        "params": params,
        "dense_params": DENSE_PARAMS,
        "macs": macs,
        "dense_macs": DENSE_MACS,
        "train_time_s": time_s + seed,
        "epochs_trained": float(EPOCHS),
        "step": EPOCHS * STEPS_PER_EPOCH,
        "train_energy_j": 1000.0 * time_s + seed,
        "energy_method": "gpu: nvml",
        "train_energy_j_est": math.nan,
        "co2_kg_est": math.nan,
        "latency_ms": macs / 1e7,
        "throughput_sps": 1e9 / macs,
        "inference_method": "measured on cuda",
    }
    row.update(extra)
    row.setdefault("density", params / row["dense_params"])
    row.update(compression=row["dense_params"] / params, speedup=row["dense_macs"] / macs)
    return row


def _short(name: str, params: dict[str, Any]) -> str:
    shown = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{name}({shown})" if shown else name


def fake_cell(
    suite: str,
    model: dict[str, Any],
    method: str,
    params: dict[str, Any],
    seed: int,
    *,
    dataset: str = "cifar10",
    model_name: str = "resnet",
    full: dict[str, Any] | None = None,
    label: str | None = None,
) -> SimpleNamespace:
    """A stand-in for `pcnbench.cells.Cell`: what `Store.start_cell` reads of one.

    `params` is the method's setting as the suite wrote it; `full` its full parameters
    (defaults filled in; `params` when not given). `label` overrides the usual label.
    """
    if label is None:
        parts = [dataset, _short(model_name, model), _short(method, params), f"seed {seed}"]
        label = " · ".join(parts)
    config = {
        "dataset": {"name": dataset, "params": {}},
        "model": {"name": model_name, "params": model},
        "method": {"name": method, "params": params if full is None else full},
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return SimpleNamespace(
        id=digest,
        suite=suite,
        label=label,
        config=config,
        seed=seed,
        dataset=SimpleNamespace(name=dataset, raw={}),
        model=SimpleNamespace(name=model_name, raw=dict(model)),
        method=SimpleNamespace(name=method, raw=dict(params)),
    )


SUITE_TEXT = """\
name: synth
description: Synthetic results for the report tests.
seeds: 3
datasets: [cifar10]
models:
  - name: resnet
    params: {depth: [20, 56]}
methods:
  - dense
  - {name: pcn, params: {keep: [f0.25, f0.5]}}
  - {name: magnitude, params: {sparsity: 0.9}}
  - {name: lottery, params: {levels: 3, rewind: 2ep}}
  - lowrank
recipe: {epochs: 20}
"""


CLAIMS_TEXT = """\
claims:
  - name: PCN keeps dense accuracy within 1 pp
    subject: {method: pcn}
    baseline: {method: dense}
    expect: {accuracy: ">= -1pp"}
  - name: Magnitude pruning trains in under half the time
    subject: {method: magnitude}
    baseline: {method: dense}
    expect: {train_time_s: "< 0.5x"}
"""


def write_synthetic_results(out_dir: Path, suite_text: str = SUITE_TEXT) -> Path:
    """Write `out_dir/results.db` (the run storing `suite_text`) and return `out_dir`."""
    store = Store(out_dir / "results.db")
    env = {
        "pcnbench": "0.1.0",
        "python": "3.11.7",
        "torch": "2.5.0",
        "gpus": ["NVIDIA H100 80GB HBM3"],
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "git_dirty": False,
    }
    run = store.begin_run("synth", "suites/synth.yaml", "ab" * 32, suite_text, ["pcnbench"], env)
    r20 = {"depth": 20}

    def finish(cell: SimpleNamespace, results: list[dict], epochs: list, phases: list) -> None:
        store.start_cell(cell, run, "cuda:0")
        store.finish_cell(cell.id, "done", results=results, epochs=epochs, phases=phases)

    for seed in SEEDS:
        base = DENSE_ACC[seed]
        finish(
            fake_cell("synth", r20, "dense", {}, seed),
            [_result(DENSE_PARAMS, DENSE_MACS, base, 1000.0, seed)],
            _epochs(base),
            [_phase("train", "train", 0, EPOCHS * STEPS_PER_EPOCH)],
        )
        for tag, keep, params, macs in (
            ("pcn_f025", 0.25, 34_500, 5_100_000),
            ("pcn_f05", 0.5, 90_000, 13_000_000),
        ):
            acc = base + OFFSETS[tag][seed]
            transform = 5 * STEPS_PER_EPOCH
            finish(
                fake_cell("synth", r20, "pcn", {"keep": f"f{keep:g}"}, seed),
                [
                    _result(
                        params,
                        macs,
                        acc,
                        600.0,
                        seed,
                        transform_epoch=5,
                        acc_before_transform=0.6,
                        acc_after_transform=0.55,
                        pcn_layers=pcn_layers(keep),
                    )
                ],
                _epochs(acc),
                [
                    _phase("train", "train", 0, transform),
                    _phase("pcn_transform", "transform", transform, transform),
                    _phase("train", "train", transform, EPOCHS * STEPS_PER_EPOCH),
                ],
            )
        acc = base + OFFSETS["magnitude"][seed]
        finish(
            fake_cell("synth", r20, "magnitude", {"sparsity": 0.9}, seed),
            [
                _result(
                    27_247,
                    4_080_000,
                    acc,
                    1100.0,
                    seed,
                    sparsity=0.9,
                    density=0.09,  # of prunable weights; biases and norms stay, so params are 10%
                    train_energy_j=math.nan,
                    energy_method="unmetered (no meters enabled)",
                    train_energy_j_est=1.2e6 + seed,
                )
            ],
            _epochs(acc),
            [_phase("prune", "transform", EPOCHS * STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH)],
        )
        levels = [
            _result(
                round(DENSE_PARAMS * 0.8**level),
                round(DENSE_MACS * 0.8**level),
                base - 0.001 * level,
                1000.0 * (level + 1),
                seed,
                level=level,
                rewind_step=2 * STEPS_PER_EPOCH,
                density=0.8**level,
                epochs_trained=float(EPOCHS + level * (EPOCHS - 2)),
                latency_ms=math.nan,
                inference_method="not measured: metering disabled",
            )
            for level in (1, 2, 3)
        ]
        finish(
            fake_cell("synth", r20, "lottery", {"levels": 3, "rewind": "2ep"}, seed),
            levels,
            _epochs(base, restarts=3, rewind=2),
            [
                _phase("prune", "transform", (EPOCHS + i * (EPOCHS - 2)) * STEPS_PER_EPOCH, 0)
                for i in range(3)
            ],
        )
    failed = fake_cell("synth", r20, "lowrank", {}, 0)
    store.start_cell(failed, run, "cuda:0")
    store.finish_cell(failed.id, "failed", error=TRACEBACK)
    store.start_cell(fake_cell("synth", r20, "lowrank", {}, 1), run, "cuda:0")  # never finished
    r56 = {"depth": 56}
    for seed in SEEDS:
        base = DENSE_ACC[seed] + 0.01
        finish(
            fake_cell("synth", r56, "dense", {}, seed),
            [_result(855_770, 125_000_000, base, 2800.0, seed, **R56_DENSE)],
            _epochs(base),
            [],
        )
        finish(
            fake_cell("synth", r56, "pcn", {"keep": "f0.25"}, seed),
            [_result(100_000, 16_000_000, base - 0.02, 1500.0, seed, **R56_DENSE)],
            _epochs(base - 0.02),
            [],
        )
    store.end_run(run, "failed")
    store.close()
    return out_dir


def report_host(*extra: tuple[str, object], methods: bool = True) -> PluginHost:
    """A plugin host with the built-in reporters and (unless `methods` is False) methods.

    The methods give the report their point keys (the lottery's `level`) and their own
    figures (PCN spectra, IMP levels); `extra` (name, plugin) pairs are registered as well.
    """
    plugins: list[tuple[str, object]] = [("reporters", reporters)]
    if methods:
        for module in (dense, pcn, magnitude, lottery, lowrank):
            plugins.append((module.__name__.rsplit(".", 1)[-1], module))
    return load_plugins([*plugins, *extra], entry_points=False)


def published_references() -> list[Any]:
    """References for the synthetic suite: two on its dataset (one with params only, one with
    both params and MACs, both better than any result so that a frontier would take them), and
    one on another dataset that must not appear."""
    from pcnbench.api import Reference

    return [
        Reference(
            "Paper ResNet-20 dense",
            "He et al. 2016, Table 6",
            "cifar10",
            "resnet(depth=20)",
            0.99,
            params=100_000,
        ),
        Reference(
            "Paper ResNet-20 PCN",
            "https://example.org/paper (Table 2)",
            "cifar10",
            None,
            0.98,
            params=50_000,
            macs=1_000_000,
        ),
        Reference("Elsewhere", "another paper", "imagenet", None, 0.761, params=25_557_032),
    ]
