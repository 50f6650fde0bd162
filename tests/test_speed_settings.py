"""Speed settings (recipe precision, channels_last, compile): validated, in the cell id, same
results as eager fp32 within stated tolerances, every built-in method runs with them, and the
training loop reads the device a fixed number of times per epoch whatever its step count."""

from __future__ import annotations

import functools
import json
import shutil

import pytest
import torch
from torch import nn

from pcnbench.api import TensorSplits
from pcnbench.cli import main
from pcnbench.errors import PcnbenchError, SuiteError
from pcnbench.masks import MaskEnforcer, set_mask
from pcnbench.recipe import Recipe
from pcnbench.session import Session
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE

# Measured on the CPU (2 epochs of 3 steps, the convnet below), largest difference from eager
# fp32: channels_last and compile 6e-8 in the weights, 1e-7 relative in the epoch losses
# (float rounding of other summation orders); bf16 4e-3 in the weights, 2e-4 in the losses.
CLOSE = {"rtol": 1e-4, "atol": 1e-5}  # channels_last, compile
BF16 = {"rtol": 5e-2, "atol": 2e-2}  # weights; losses within 1% (relative)


def image_splits(n: int = 40) -> TensorSplits:
    g = torch.Generator().manual_seed(0)
    return TensorSplits(
        x_train=torch.rand(n, 3, 6, 6, generator=g),
        y_train=torch.randint(0, 4, (n,), generator=g),
        x_test=torch.rand(12, 3, 6, 6, generator=g),
        y_test=torch.randint(0, 4, (12,), generator=g),
        mean=(0.5, 0.4, 0.6),
        std=(0.25, 0.3, 0.2),
    )


def convnet() -> nn.Module:
    """Conv, BatchNorm, Linear; no dropout (compiled code draws other random numbers)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 4),
    )


def recipe(**speed: object) -> Recipe:
    """2 epochs of 40 samples at batch 16: two full batches and a ragged one of 8 per epoch."""
    return Recipe(
        epochs=2,
        batch_size=16,
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        weight_decay=1e-3,
        augmentation={"crop_padding": 1, "flip": True},
        eval_every=0,
        **speed,
    )


def trained(**speed: object) -> Session:
    session = Session(convnet(), image_splits(), recipe(**speed), seed=3)
    session.train()
    return session


def assert_same_training(a: Session, b: Session, weights: dict, loss_rtol: float) -> None:
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert y.dtype == x.dtype, name
        torch.testing.assert_close(y, x, **weights, msg=name)
    for ra, rb in zip(a.records, b.records, strict=True):
        assert rb.train_loss == pytest.approx(ra.train_loss, rel=loss_rtol)


@pytest.fixture
def eager_backend(monkeypatch):
    """torch.compile with the aot_eager backend: dynamo and AOT autograd, no C++ build.

    What the session does with a compiled model (hooks, masks, state dicts, models replaced)
    is decided there; inductor's code generation is covered once, in
    `test_compile_trains_like_eager`, because a cold inductor build takes tens of seconds.
    """
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("  precision: fp16", "recipe.precision: must be 'fp32', 'tf32' or 'bf16' (got 'fp16')"),
        ("  channels_last: maybe", "recipe.channels_last: must be a valid boolean"),
        (
            "  compile: max-autotune",
            "recipe.compile: must be false, default or reduce-overhead (got 'max-autotune')",
        ),
    ],
)
def test_each_key_is_validated_where_the_suite_writes_it(host, write_suite, line, expect) -> None:
    text = BASE_SUITE + line + "\n"
    file = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(file, host)
    row, column = text.count("\n"), len(line.split(":")[0]) + 3  # the value's place, 1-based
    assert str(info.value).startswith(f"{file}:{row}:{column}: {expect}"), str(info.value)


def test_non_default_values_enter_the_cell_id_and_defaults_do_not(host, write_suite) -> None:
    def cell_id(extra: str = "") -> str:
        loaded = load_suite(write_suite(BASE_SUITE + extra), host)
        return loaded.cells[0].id

    base = cell_id()
    assert cell_id("  precision: fp32\n  channels_last: false\n  compile: false\n") == base
    assert cell_id("  compile: true\n") == cell_id("  compile: default\n")
    variants = [
        "  precision: tf32\n",
        "  precision: bf16\n",
        "  channels_last: true\n",
        "  compile: default\n",
        "  compile: reduce-overhead\n",
    ]
    ids = {cell_id(extra) for extra in variants}
    assert len(ids) == len(variants) and base not in ids


def test_settings_a_device_cannot_run_are_refused_when_the_session_is_built(monkeypatch) -> None:
    def build(**speed: object) -> Session:
        return Session(convnet(), image_splits(), recipe(**speed), seed=0)

    with pytest.raises(PcnbenchError, match=r"^recipe\.compile: reduce-overhead captures CUDA"):
        build(compile="reduce-overhead")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(PcnbenchError, match=r"^recipe\.compile: torch\.compile on the CPU needs"):
        build(compile="default")
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(PcnbenchError, match=r"^recipe\.precision: bf16 is not supported on"):
        build(precision="bf16")
    assert build().recipe.compile is False  # the defaults need nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="reduce-overhead runs where CUDA is")
def test_a_setting_this_machine_cannot_run_stops_the_run_once(write_suite, tmp_path, capsys):
    suite = write_suite(
        BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]") + "  compile: reduce-overhead\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--output", str(out), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # a busy machine adds the oversubscription warning first; the error comes once, before all else
    said = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert said[0].startswith("error: recipe.compile: reduce-overhead captures CUDA graphs"), err
    assert err.count("error: ") == 1, err
    assert main(["results", str(out), "--format", "csv"]) == 0
    rows = capsys.readouterr().out
    assert ",failed," not in rows and rows.count(",interrupted,") == 1  # retried, not failed


def test_channels_last_tf32_and_bf16_train_like_fp32() -> None:
    fp32 = trained()
    last = trained(channels_last=True)
    assert last.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_training(fp32, last, CLOSE, 1e-5)
    tf32 = trained(precision="tf32")  # TF32 is a CUDA switch: on the CPU nothing changes
    assert_same_training(fp32, tf32, {"rtol": 0, "atol": 0}, 0)
    bf16 = trained(precision="bf16")
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # fp32 master weights
    assert_same_training(fp32, bf16, BF16, 1e-2)
    assert not torch.equal(fp32.model[0].weight, bf16.model[0].weight)  # bf16 did run


def test_compile_trains_like_eager() -> None:
    torch._dynamo.reset()
    eager = trained(channels_last=True)
    compiled = trained(channels_last=True, compile="default")
    assert_same_training(eager, compiled, CLOSE, 1e-4)
    # what is stored and evaluated is the model itself, not the compiled wrapper
    assert list(compiled._capture().model) == list(eager.model.state_dict())
    assert compiled.evaluate() == pytest.approx(eager.evaluate(), rel=1e-4)


def test_compiled_training_runs_hooks_masks_and_replaced_models(eager_backend) -> None:
    session = Session(
        convnet(), image_splits(), recipe(compile="default"), seed=3, measure_inference=False
    )
    session.train(until=1)
    set_mask(session.model[4], "weight", (torch.arange(4 * 36) % 2).view(1, -1).repeat(4, 1))
    enforce = MaskEnforcer(session)
    session.add_step_hook(enforce)
    snapshot = session.snapshot()
    calls = []
    handle = session.model[4].register_forward_hook(lambda *args: calls.append(1))
    session.train(until="4it")
    assert len(calls) == 1, "a hook added after compiling runs in compiled steps"
    handle.remove()
    session.restore(snapshot)  # a new model: compiled again, masks still enforced
    session.train()
    assert len(calls) == 1
    layer = session.model[4]
    assert torch.all(layer.weight[layer.weight_mask == 0] == 0)
    state = session._capture().model
    assert "4.weight_mask" in state and not any("_orig_mod" in key for key in state)
    row = session.record()
    assert row["density"] == 0.5 and 0 <= row["accuracy"] <= 1


HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def count_host_reads(monkeypatch, calls: list[str]) -> None:
    """Count every call of a Tensor method that reads values back to the host."""
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("speed", [{}, {"channels_last": True, "precision": "bf16"}])
def test_training_reads_the_device_a_fixed_number_of_times_per_epoch(monkeypatch, speed) -> None:
    reads: dict[int, list[str]] = {}
    for n in (40, 160):  # 3 or 10 steps per epoch
        session = Session(convnet(), image_splits(n), recipe(**speed), seed=3)
        calls: list[str] = []
        with monkeypatch.context() as patch:
            count_host_reads(patch, calls)
            session.train()
        reads[n] = calls
    assert reads[40] == reads[160], "host reads grow with the steps of an epoch"
    # the epoch's loss, once per epoch; the final evaluation's accuracy and loss, once
    assert reads[40] == ["item", "item", "tolist"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "speed",
    [
        {"precision": "bf16", "channels_last": True},
        {"precision": "bf16", "channels_last": True, "compile": "reduce-overhead"},
    ],
)
def test_cuda_fast_steps_never_wait_for_the_gpu(speed) -> None:
    def cuda_session(**settings: object) -> Session:
        r = recipe(**settings).model_copy(update={"epochs": 4})
        return Session(convnet(), image_splits(), r, seed=3, device="cuda", measure_inference=False)

    fast = cuda_session(**speed)
    fast.train(until=2)  # compiles and captures the graphs
    torch.cuda.set_sync_debug_mode("error")
    try:
        fast.train(until="8it")  # inside epoch 3: no epoch end, nothing may read the GPU
    finally:
        torch.cuda.set_sync_debug_mode("default")
    fast.train()
    plain = cuda_session()
    plain.train()
    assert_same_training(plain, fast, BF16, 5e-2)


def test_divergence_is_still_found_at_the_epoch_end() -> None:
    session = Session(convnet(), image_splits(), recipe(channels_last=True), seed=3)
    session.train(until="1it")
    with torch.no_grad():
        session.model[4].weight.fill_(float("nan"))
    with pytest.raises(PcnbenchError, match=r"^diverged: loss is nan at epoch 1, step 2$"):
        session.train()


ALL_METHODS = """\
name: speed
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 32, n_test: 16}
models:
  - name: cnn
    params: {width: 4}
methods:
  - dense
  - name: magnitude
    params: {sparsity: 0.5, finetune_epochs: 1}
  - name: lottery
    params: {levels: 1, rate: 0.5, rewind: 1it}
  - name: pcn
    params: {at_epoch: 1, keep: f0.5, layers: {fc: null}, calibration: 32}
  - name: lowrank
    params: {at_epoch: 1, rank: r0.5}
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {name: sgd, lr: 0.05}
  channels_last: true
  compile: default
device: cpu
"""


def test_every_builtin_method_runs_compiled_in_channels_last(
    eager_backend, write_suite, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    code = main(["run", str(write_suite(ALL_METHODS)), "--output", str(out), "--quiet"])
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["results", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rows} == {"dense", "magnitude", "lottery", "pcn", "lowrank"}
    for row in rows:
        assert row["status"] == "done", row
        assert 0 <= row["accuracy"] <= 1
    by_method = {r["method"]: r for r in rows}
    for method in ("pcn", "lowrank"):  # layers rewritten smaller
        assert by_method[method]["params"] < by_method[method]["dense_params"]
    for method in ("magnitude", "lottery"):  # masks enforced through compiled steps
        assert by_method[method]["density"] == pytest.approx(0.5, abs=0.01)
