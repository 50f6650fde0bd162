"""Training step time of a PCN against the dense network it came from.

CIFAR ResNet-20 of width 4, 3×32×32 inputs, batch 128: one step is forward, cross-entropy,
backward and an SGD step (momentum, weight decay). The PCN is the same network after
`pcn_transform` with keep f0.25, calibrated on random inputs (timing does not depend on the
values). Dense and PCN steps are timed in alternating rounds after a warm-up; the figure is the
pcn/dense step time ratio, with params and MACs of both. `fast` (GPU): channels_last and bf16
autocast. Short CPU mode: width 1, 2 steps a round, 3 rounds.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import torch
import torch.nn.functional as F
from _common import host, paired, resnet

from pcnbench.counting import count_macs, count_params

SHAPE = (3, 32, 32)


class Stepper:
    """One model with its optimizer and a fixed batch: `steps(n)` runs n training steps."""

    def __init__(self, model, x, y, autocast: bool) -> None:
        self.model = model.train()
        self.x, self.y = x, y
        self.autocast = autocast
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4
        )

    def steps(self, n: int) -> None:
        """Forward, backward, optimizer step, n times."""
        for _ in range(n):
            context = (
                torch.autocast(self.x.device.type, dtype=torch.bfloat16)
                if self.autocast
                else contextlib.nullcontext()
            )
            with context:
                loss = F.cross_entropy(self.model(self.x), self.y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


@pytest.mark.parametrize("mode", ["eager", pytest.param("fast", marks=pytest.mark.gpu_only)])
def test_pcn_step(benchmark, figures, device, scale, mode):
    """pcn/dense training step time ratio (ResNet-20 width 4, keep f0.25, batch 128)."""
    from pcnbench_plugins.pcn import pcn_transform

    width, steps, rounds, batch = scale.pick(
        smoke=(1, 1, 1, 16), short=(1, 2, 3, 128), full=(4, 20, 10, 128)
    )
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    dense = resnet(host(), width).to(device)
    calibration = [torch.randn(batch, *SHAPE, device=device) for _ in range(4)]
    pcn, report = pcn_transform(dense, calibration, keep="f0.25")
    pcn = pcn.to(device)
    x = torch.randn(batch, *SHAPE, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    fast = mode == "fast"
    if fast:
        dense = dense.to(memory_format=torch.channels_last)
        pcn = pcn.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    d, p = Stepper(dense, x, y, fast), Stepper(pcn, x, y, fast)
    for stepper in (d, p):
        stepper.steps(3)  # warm-up: cuDNN picks its algorithms
    start_cpu = time.process_time()
    pcn_s, dense_s = paired(
        benchmark, lambda: p.steps(steps), lambda: d.steps(steps), rounds=rounds, device=device
    )
    figures("width", width)
    figures("dense_step_ms", dense_s / steps * 1e3, " ms")
    figures("pcn_step_ms", pcn_s / steps * 1e3, " ms")
    figures("dense_params", count_params(dense))
    figures("pcn_params", count_params(pcn))
    figures("dense_macs", count_macs(dense, SHAPE))
    figures("pcn_macs", count_macs(pcn, SHAPE))
    figures("transformed_layers", len(report.layers))
    figures("pcn/dense step time", pcn_s / dense_s)
    assert time.process_time() > start_cpu
    assert count_params(pcn) < count_params(dense)
