"""ResNet-20 training epochs on 50,000 CIFAR-shaped synthetic images (GPU figures).

Batch 128, crop+flip on the device, the cifar10 suite's optimizer, through `Session` as a cell
trains. Settings: `eager` is fp32 without channels_last or compile; `fastest` is bf16,
channels_last and compile reduce-overhead (the recipe's precision / channels_last / compile
keys; skipped where the recipe lacks them). The first epoch is an untimed warm-up (compile,
cuDNN autotuning); each later epoch is one benchmark round. Figures: seconds per epoch and
images/s. Width 1 runs 10 epochs in both settings and `test_loss_curves_agree` compares their
mean training losses epoch by epoch: |fastest − eager| ≤ 0.05 + 0.10 × eager, every epoch
(bf16 rounding and a different summation order change the trajectory a little, not its shape).
--smoke: 128 images, 2 epochs, width 1, on cpu too (compile off on cpu).
"""

from __future__ import annotations

import pytest
from _common import (
    EAGER,
    FASTEST,
    cifar_recipe,
    fast_keys_supported,
    host,
    resnet,
    sync,
    synthetic_cifar,
)

from pcnbench.session import Session

CURVES: dict[str, list[float]] = {}
ABS_TOL, REL_TOL = 0.05, 0.10

CASES = [
    pytest.param(1, "eager", 10, id="w1-eager"),
    pytest.param(1, "fastest", 10, id="w1-fastest"),
    pytest.param(4, "fastest", 4, id="w4-fastest"),
]


@pytest.mark.gpu_only
@pytest.mark.parametrize(("width", "settings", "epochs"), CASES)
def test_resnet_epoch(benchmark, figures, device, scale, width, settings, epochs):
    """Seconds per training epoch and images/s of ResNet-20 at `width` with `settings`."""
    if settings == "fastest" and not fast_keys_supported():
        pytest.skip("the recipe has no precision / channels_last / compile keys")
    n_train = scale.pick(smoke=128, short=512, full=50_000)
    epochs = scale.pick(smoke=2, short=3, full=epochs)
    width = scale.pick(smoke=1, short=width, full=width)
    chosen = dict(EAGER if settings == "eager" else FASTEST)
    if not device.startswith("cuda"):
        chosen["compile"] = False  # inductor on cpu takes minutes: the smoke run checks the rest
    plugins = host()
    session = Session(
        resnet(plugins, width),
        synthetic_cifar(plugins, n_train),
        cifar_recipe(epochs, chosen),
        seed=0,
        device=device,
        measure_inference=False,
    )
    session.train(until=1)  # warm-up
    sync(device)
    done = iter(range(2, epochs + 1))

    def epoch() -> None:
        session.train(until=next(done))
        sync(device)

    benchmark.pedantic(epoch, rounds=epochs - 1, iterations=1)
    seconds = sorted(r.seconds for r in session.records[1:])
    median = seconds[len(seconds) // 2]
    losses = [r.train_loss for r in session.records]
    CURVES[f"w{width}-{settings}"] = losses
    figures("settings", ",".join(f"{k}={v}" for k, v in chosen.items()))
    figures("epoch_s", median, " s")
    figures("images_per_s", n_train / median)
    figures("train_loss_curve", " ".join(f"{v:.4f}" for v in losses))
    assert all(loss == loss for loss in losses)  # no nan


@pytest.mark.gpu_only
def test_loss_curves_agree(figures, device):
    """fastest vs eager mean training loss per epoch (width 1): within 0.05 + 10% of eager."""
    eager, fast = CURVES.get("w1-eager"), CURVES.get("w1-fastest")
    if eager is None or fast is None:
        pytest.skip("needs both width-1 epoch benchmarks of this session")
    gaps = [abs(f - e) - (ABS_TOL + REL_TOL * e) for e, f in zip(eager, fast, strict=True)]
    worst = max(gaps)
    figures("largest |Δloss| beyond tolerance", worst, target="≤ 0", ok=worst <= 0)
    figures("eager_final_loss", eager[-1])
    figures("fastest_final_loss", fast[-1])
    assert worst <= 0, f"loss curves differ beyond {ABS_TOL} + {REL_TOL:.0%}: {eager} vs {fast}"
