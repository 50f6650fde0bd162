"""Batch sources: order, augmentation, evaluation, calibration and validation data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pcnbench.api import FolderSplits, TensorSplits
from pcnbench.data import FolderBatches, TensorBatches, make_source, split_validation
from pcnbench.errors import PcnbenchError
from pcnbench.recipe import Recipe

MEAN, STD = (0.5, 0.25, 0.75), (0.2, 0.5, 0.3)


def image_splits(n: int = 20, size: int = 6) -> TensorSplits:
    """Random images whose label is their index, so every batch says where its samples came from."""
    g = torch.Generator().manual_seed(1)
    return TensorSplits(
        x_train=torch.rand(n, 3, size, size, generator=g),
        y_train=torch.arange(n),
        x_test=torch.rand(7, 3, size, size, generator=g),
        y_test=torch.arange(7),
        mean=MEAN,
        std=STD,
    )


def recipe(**augmentation: object) -> Recipe:
    return Recipe(epochs=3, batch_size=8, augmentation=augmentation)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def all_batches(source: TensorBatches, epoch: int, start: int = 0) -> list:
    return list(source.batches(epoch, start))


def test_epoch_visits_every_sample_once_in_ceil_batches() -> None:
    source = TensorBatches(image_splits(20), recipe(), seed=0)
    batches = all_batches(source, 0)
    assert [len(y) for _, y in batches] == [8, 8, 4]
    assert source.num_batches() == 3
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(20))
    assert labels.tolist() != list(range(20))  # shuffled


def test_unaugmented_batches_are_the_normalized_samples() -> None:
    splits = image_splits()
    for x, y in TensorBatches(splits, recipe(), seed=0).batches(1):
        assert torch.allclose(x, normalize(splits.x_train[y]), atol=1e-6)


def test_order_and_augmentation_are_a_function_of_seed_and_epoch() -> None:
    splits = image_splits()
    first = TensorBatches(splits, recipe(crop_padding=2, flip=True), seed=3)
    again = TensorBatches(splits, recipe(crop_padding=2, flip=True), seed=3)
    other_seed = TensorBatches(splits, recipe(crop_padding=2, flip=True), seed=4)
    a, b = all_batches(first, 2), all_batches(again, 2)
    assert all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    assert not torch.equal(a[0][1], all_batches(first, 3)[0][1])
    assert not torch.equal(a[0][1], all_batches(other_seed, 2)[0][1])


def test_starting_mid_epoch_gives_the_remaining_batches() -> None:
    source = TensorBatches(image_splits(), recipe(crop_padding=1, flip=True), seed=0)
    full, tail = all_batches(source, 1), all_batches(source, 1, start=1)
    assert len(tail) == 2
    for (xf, yf), (xt, yt) in zip(full[1:], tail, strict=True):
        assert torch.equal(xf, xt) and torch.equal(yf, yt)
    stopped = list(source.batches(1, 0, 2))
    assert len(stopped) == 2 and torch.equal(stopped[1][0], full[1][0])


def test_crop_equals_zero_pad_then_normalize_then_crop() -> None:
    splits, p = image_splits(size=5), 2
    source = TensorBatches(splits, recipe(crop_padding=p, flip=True), seed=0)
    x, y = next(source.batches(0))
    assert x.shape == (8, 3, 5, 5)
    padded = normalize(F.pad(splits.x_train[y], (p, p, p, p)))  # torchvision's order
    fill = normalize(torch.zeros(1, 3, 1, 1))
    flipped = offset = 0
    for i in range(len(y)):
        candidates = [
            (padded[i, :, r : r + 5, c : c + 5], f, (r, c))
            for r in range(2 * p + 1)
            for c in range(2 * p + 1)
            for f in (False, True)
        ]
        matches = [
            (f, rc)
            for crop, f, rc in candidates
            if torch.allclose(x[i], crop.flip(-1) if f else crop, atol=1e-6)
        ]
        assert matches, f"sample {i} is no flipped or unflipped crop of its padded image"
        flipped += matches[0][0]
        offset += matches[0][1] != (p, p)
    assert 0 < flipped < len(y) and offset > 0
    border = x[:, :, 0, :].transpose(0, 1).reshape(3, -1)  # top rows include padding pixels
    is_fill = torch.isclose(border, fill.view(3, 1), atol=1e-6).all(0)
    assert is_fill.any()


def test_flip_without_crop_mirrors_some_samples() -> None:
    splits = image_splits()
    x, y = next(TensorBatches(splits, recipe(flip=True), seed=0).batches(0))
    reference = normalize(splits.x_train[y])
    same = [torch.allclose(a, b, atol=1e-6) for a, b in zip(x, reference, strict=True)]
    mirrored = [torch.allclose(a, b.flip(-1), atol=1e-6) for a, b in zip(x, reference, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert any(same) and any(m and not s for s, m in zip(same, mirrored, strict=True))


def test_crop_needs_images() -> None:
    splits = TensorSplits(
        torch.rand(10, 4), torch.zeros(10, dtype=torch.int64), torch.rand(2, 4),
        torch.zeros(2, dtype=torch.int64), (0.5,), (0.2,),
    )  # fmt: skip
    with pytest.raises(PcnbenchError, match="image inputs"):
        TensorBatches(splits, recipe(crop_padding=1), seed=0)


def test_eval_batches_are_normalized_and_in_order() -> None:
    splits = image_splits()
    batches = list(TensorBatches(splits, recipe(crop_padding=2, flip=True), seed=0).eval_batches())
    assert torch.cat([y for _, y in batches]).tolist() == list(range(7))
    assert torch.allclose(torch.cat([x for x, _ in batches]), normalize(splits.x_test), atol=1e-6)


def test_calibration_batches_are_unaugmented_deterministic_and_sized() -> None:
    splits = image_splits(20)
    source = TensorBatches(splits, recipe(crop_padding=2, flip=True), seed=5)
    batches = list(source.calibration_batches(12, batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 2]
    x = torch.cat(batches)
    again = torch.cat(list(TensorBatches(splits, recipe(), seed=5).calibration_batches(12)))
    assert torch.equal(x, again)
    rows = [int((normalize(splits.x_train) - s).abs().flatten(1).sum(1).argmin()) for s in x]
    assert len(set(rows)) == 12
    assert torch.allclose(x, normalize(splits.x_train[rows]), atol=1e-6)
    assert len(torch.cat(list(source.calibration_batches(1000)))) == 20


def test_validation_split_is_disjoint_deterministic_and_sized() -> None:
    splits = image_splits(20)
    rest, (x_val, y_val) = split_validation(splits, 0.25)
    assert len(y_val) == 5 and len(rest.y_train) == 15 and len(x_val) == 5
    assert set(y_val.tolist()).isdisjoint(rest.y_train.tolist())
    assert sorted(y_val.tolist() + rest.y_train.tolist()) == list(range(20))
    assert torch.equal(split_validation(splits, 0.25)[1][1], y_val)
    assert torch.equal(x_val, splits.x_train[y_val])
    source = make_source(splits, Recipe(epochs=1, batch_size=8, validation_split=0.25), seed=0)
    assert source.n_train == 15 and source.splits == ("test", "val")


class IndexedImages(Dataset):
    """Folder-like dataset returning normalized (image, index); flips with torch's RNG."""

    def __init__(self, n: int, augment: bool) -> None:
        self.x = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        self.augment = augment
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.loaded.append(i)
        x = self.x[i]
        if self.augment and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, i


def folder_splits(n: int = 20) -> FolderSplits:
    return FolderSplits(
        train=IndexedImages(n, augment=True),
        test=IndexedImages(5, augment=False),
        calibration=IndexedImages(n, augment=False),
        num_workers=0,
    )


def test_folder_batches_resume_mid_epoch_without_loading_skipped_samples() -> None:
    splits = folder_splits()
    source = FolderBatches(splits, recipe(), seed=2)
    full = list(source.batches(1))
    assert sorted(torch.cat([y for _, y in full]).tolist()) == list(range(20))
    splits.train.loaded.clear()
    state = torch.get_rng_state()
    tail = list(source.batches(1, start_batch=1))
    assert torch.equal(torch.get_rng_state(), state)  # the session's RNG is left alone
    assert sorted(splits.train.loaded) == sorted(torch.cat([y for _, y in tail]).tolist())
    assert len(splits.train.loaded) == 12
    for (xf, yf), (xt, yt) in zip(full[1:], tail, strict=True):
        assert torch.equal(xf, xt) and torch.equal(yf, yt)
    other = torch.cat([y for _, y in source.batches(2)])
    assert other.tolist() != torch.cat([y for _, y in full]).tolist()


def test_folder_calibration_and_eval() -> None:
    source = FolderBatches(folder_splits(), recipe(), seed=2)
    assert source.input_shape == (3, 4, 4)
    calibration = list(source.calibration_batches(10, batch_size=4))
    assert [len(b) for b in calibration] == [4, 4, 2]
    assert torch.equal(torch.cat(calibration), torch.cat(list(source.calibration_batches(10))))
    assert torch.cat([y for _, y in source.eval_batches()]).tolist() == list(range(5))


def test_validation_split_is_refused_for_folder_datasets() -> None:
    with pytest.raises(PcnbenchError, match="validation_split is unsupported for folder"):
        make_source(folder_splits(), Recipe(epochs=1, validation_split=0.1), seed=0)


def test_folder_batches_are_the_same_with_worker_processes() -> None:
    splits = folder_splits()
    in_process = list(FolderBatches(splits, recipe(), seed=2).batches(1))
    splits.num_workers = 2
    with_workers = list(FolderBatches(splits, recipe(), seed=2).batches(1))
    for (xa, ya), (xb, yb) in zip(in_process, with_workers, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
