"""Training step time of a PCN against the dense network it came from.

Run: python benchmarks/bench_pcn_step.py [--device cpu|cuda] [--repeats R] [--keep f0.25]
CIFAR ResNet-20 of width 4, 3×32×32 inputs, batch 128: one step is forward, cross-entropy,
backward and an SGD step (momentum, weight decay). The PCN is the same network after
`pcn_transform` with keep f0.25, calibrated on random inputs (timing does not depend on the
values). Dense and PCN steps are timed in alternating rounds after a warm-up, and the medians
are printed with params and MACs of both; the line to read is "pcn/dense step time ratio".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from pcnbench.counting import count_macs, count_params
from pcnbench_plugins.models.cifar_resnet import CifarResNet
from pcnbench_plugins.pcn import pcn_transform

SHAPE = (3, 32, 32)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stepper:
    """One model with its optimizer and a fixed batch: `step()` is one training step."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model = model.train()
        self.x, self.y = x, y
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4
        )

    def step(self) -> None:
        """Forward, backward, optimizer step."""
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def timed(stepper: Stepper, device: torch.device, steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds per step over `steps` consecutive steps."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        stepper.step()
    sync(device)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    """Build both networks, time their training steps and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--keep", default="f0.25")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per network")
    parser.add_argument("--steps", type=int, default=0, help="steps per round (0: 3 CPU, 20 GPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per network")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps = args.steps or (20 if device.type == "cuda" else 3)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    dense = CifarResNet(SHAPE[0], 10, blocks_per_stage=3, width=args.width).to(device)
    calibration = [torch.randn(args.batch, *SHAPE, device=device) for _ in range(4)]
    pcn, report = pcn_transform(dense, calibration, keep=args.keep)
    pcn = pcn.to(device)
    x = torch.randn(args.batch, *SHAPE, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    if args.channels_last:
        dense = dense.to(memory_format=torch.channels_last)
        pcn = pcn.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    steppers = {"dense": Stepper(dense, x, y), "pcn": Stepper(pcn, x, y)}
    if args.compile:
        # Fused kernels and less Python per step: shows the step time without launch overhead.
        for stepper in steppers.values():
            stepper.model = torch.compile(stepper.model)
    for stepper in steppers.values():
        for _ in range(args.warmup):
            stepper.step()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    cpu_times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(args.repeats):
        # Alternating rounds: a slow spell on a shared machine hits both networks alike.
        for name, stepper in steppers.items():
            wall, cpu = timed(stepper, device, steps)
            times[name].append(wall)
            cpu_times[name].append(cpu)
    medians = {name: statistics.median(t) for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu_times.items()}

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(
        f"CIFAR ResNet-20 width {args.width}, batch {args.batch}, {where}{threads}, "
        f"keep {args.keep}, {'channels_last' if args.channels_last else 'NCHW'}, "
        f"{'compiled, ' if args.compile else ''}"
        f"{args.repeats} rounds of {steps} steps"
    )
    for name, model in (("dense", dense), ("pcn", pcn)):
        print(
            f"{name:>5}: step {medians[name] * 1e3:8.2f} ms (min {min(times[name]) * 1e3:.2f},"
            f" process CPU {cpu_medians[name] * 1e3:.2f})"
            f"  params {count_params(model):>9,}  MACs {count_macs(model, SHAPE):>13,}"
        )
    print(f"transformed layers: {len(report.layers)}")
    if device.type == "cpu":
        # CPU seconds are steadier than wall time when other processes share the cores.
        print(f"pcn/dense process CPU time ratio: {cpu_medians['pcn'] / cpu_medians['dense']:.3f}")
    print(f"pcn/dense step time ratio: {medians['pcn'] / medians['dense']:.3f}")


if __name__ == "__main__":
    main()
