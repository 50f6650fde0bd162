"""Harness overhead: `Session.train` against a bare PyTorch loop doing the same steps.

Quickstart-like setup (MLP on scikit-learn's digits); target harness/bare ≤ 1.03.
Figures: harness/bare and harness/bare-prenormalized (the bare loop normalizing the training
set once, as the harness does, instead of per batch), and µs per step of each.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F
from _common import paired, sync
from sklearn.datasets import load_digits
from torch import nn

from pcnbench.contracts import TensorSplits
from pcnbench.data import derive_seed
from pcnbench.recipe import Recipe
from pcnbench.session import Session

SEED = 0
TARGET = 1.03


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


def harness(splits: TensorSplits, epochs: int, device: str) -> None:
    """`Session.train` for `epochs` epochs (it evaluates on test after the last)."""
    session = Session(
        mlp(), splits, recipe(epochs), seed=SEED, device=device, measure_inference=False
    )
    session.train(until="end")


def bare(splits: TensorSplits, epochs: int, device: str, prenormalize: bool = False) -> None:
    """A hand-written loop doing the same steps, then the same final evaluation."""
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


def test_loop_overhead(benchmark, figures, device, scale):
    """harness/bare ratio of `Session.train` against the bare loop (target ≤ 1.03)."""
    epochs, rounds = scale.pick(smoke=(1, 1), short=(5, 3), full=(20, 7))
    splits = digits_splits()
    h, b = paired(
        benchmark,
        lambda: harness(splits, epochs, device),
        lambda: bare(splits, epochs, device),
        rounds=rounds,
        device=device,
    )
    prenormalized = []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        bare(splits, epochs, device, prenormalize=True)
        sync(device)
        prenormalized.append(time.perf_counter() - start)
    p = statistics.median(prenormalized)
    steps = epochs * -(-len(splits.x_train) // 64)
    figures("steps", steps)
    figures("harness_us_per_step", h / steps * 1e6, " µs")
    figures("bare_us_per_step", b / steps * 1e6, " µs")
    figures("harness/bare", h / b, target=f"≤ {TARGET}", ok=h / b <= TARGET)
    figures("harness/bare-prenormalized", h / p)
    assert all(math.isfinite(t) and t > 0 for t in (h, b, p))
