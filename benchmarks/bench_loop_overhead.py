"""Harness overhead: `Session.train` against a bare PyTorch loop doing the same steps.

Run as a script: ``python benchmarks/bench_loop_overhead.py [--epochs E] [--repeats R]``.
Quickstart-like setup (MLP on scikit-learn's digits); the target is a ratio of at most 1.03.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from pcnbench.api import TensorSplits
from pcnbench.data import derive_seed
from pcnbench.recipe import Recipe
from pcnbench.session import Session

SEED = 0


def digits_splits() -> TensorSplits:
    """scikit-learn's digits as 1×8×8 images in [0, 1], an 80/20 split, train mean/std."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    x_train = x[train]
    return TensorSplits(
        x_train=x_train,
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        mean=(x_train.mean().item(),),
        std=(x_train.std().item(),),
    )


def mlp() -> nn.Module:
    """The quickstart MLP: flatten, 64→256→256→10 with ReLU."""
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def recipe(epochs: int) -> Recipe:
    """Batch 64, SGD lr 0.1 momentum 0.9 wd 5e-4, no augmentation, evaluation only at the end."""
    return Recipe(
        epochs=epochs,
        batch_size=64,
        optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
        weight_decay=5e-4,
        schedule={"name": "constant"},
        eval_every=0,
    )


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so the clock reads include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_harness(splits: TensorSplits, epochs: int, device: torch.device) -> float:
    """Seconds of `Session.train` for `epochs` epochs (it evaluates on test after the last)."""
    session = Session(mlp(), splits, recipe(epochs), seed=SEED, device=device)
    sync(device)
    started = time.perf_counter()
    session.train(until="end")
    sync(device)
    return time.perf_counter() - started


def time_bare(
    splits: TensorSplits, epochs: int, device: torch.device, prenormalize: bool = False
) -> float:
    """Seconds of a hand-written loop doing the same steps, then the same final evaluation.

    `prenormalize` normalizes the training set once, as the harness does, instead of per batch.
    """
    model = mlp().to(device)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    x_test, y_test = splits.x_test.to(device), splits.y_test.to(device)
    mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
    if prenormalize:
        x, x_test = (x - mean) / std, (x_test - mean) / std

    def normalize(batch: torch.Tensor) -> torch.Tensor:
        return batch if prenormalize else (batch - mean) / std

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    size, n = 64, len(x)
    sync(device)
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(derive_seed(SEED, 0, epoch))
        order = torch.randperm(n, generator=g).to(device, non_blocking=True)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n, size):
            index = order[start : start + size]
            loss = F.cross_entropy(model(normalize(x[index])), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        loss_sum.item()
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), device=device)
    with torch.no_grad():
        for start in range(0, len(x_test), size):
            out = model(normalize(x_test[start : start + size]))
            target = y_test[start : start + size]
            loss_sum += F.cross_entropy(out, target, reduction="sum")
            correct += (out.argmax(1) == target).sum()
    correct.item(), loss_sum.item()
    return time.perf_counter() - started


def main() -> None:
    """Time both loops interleaved and print their medians and ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's own choice")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = digits_splits()
    time_harness(splits, 1, device), time_bare(splits, 1, device)  # warm-up: allocator, kernels
    harness, bare, prenormalized = [], [], []
    for _ in range(args.repeats):
        harness.append(time_harness(splits, args.epochs, device))
        bare.append(time_bare(splits, args.epochs, device))
        prenormalized.append(time_bare(splits, args.epochs, device, prenormalize=True))
    h, b, p = (statistics.median(t) for t in (harness, bare, prenormalized))
    steps = args.epochs * -(-len(splits.x_train) // 64)
    print(f"device: {device}, threads: {torch.get_num_threads()}, steps: {steps}")
    print(f"harness:            {h:.4f} s ({h / steps * 1e6:.1f} us/step)")
    print(f"bare:               {b:.4f} s ({b / steps * 1e6:.1f} us/step)")
    print(f"bare, prenormalized: {p:.4f} s ({p / steps * 1e6:.1f} us/step)")
    print(f"harness/bare ratio: {h / b:.3f}")
    print(f"harness/bare-prenormalized ratio: {h / p:.3f}")


if __name__ == "__main__":
    main()
