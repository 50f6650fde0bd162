"""Batch sources: training order and augmentation as pure functions of (seed, epoch).

Two sources share one interface (`BatchSource`): `TensorBatches` keeps an in-memory dataset on
the training device and augments whole batches there; `FolderBatches` streams map-style
datasets through a DataLoader. Either can start at any batch of any epoch, which is what lets
a session train in pieces, restore snapshots and rewind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pcnbench.contracts import FolderSplits, TensorSplits
from pcnbench.errors import PcnbenchError
from pcnbench.recipe import Recipe

__all__ = [
    "BatchSource",
    "FolderBatches",
    "TensorBatches",
    "derive_seed",
    "make_source",
    "split_validation",
]

# Stream ids keep the random draws of different purposes independent of each other.
_ORDER, _AUGMENT, _CALIBRATION, _WORKERS = 0, 1, 2, 3


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed derived from integer keys (e.g. cell seed, stream, epoch)."""
    words = np.random.SeedSequence([k & 0xFFFF_FFFF_FFFF_FFFF for k in keys]).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


def _generator(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*keys))


def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=_generator(seed, _ORDER, epoch))


def _calibration_indices(n_train: int, n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n_train, generator=_generator(seed, _CALIBRATION))[: min(n, n_train)]


class BatchSource(Protocol):
    """What a session trains and evaluates from."""

    n_train: int
    input_shape: tuple[int, ...]
    splits: tuple[str, ...]  # evaluation splits, "test" and possibly "val"

    def batches(
        self, epoch: int, start_batch: int = 0, stop_batch: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented, normalized training batches `start_batch:stop_batch` of `epoch`."""
        ...

    def eval_batches(
        self, split: str = "test", batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Unaugmented, normalized (x, y) batches of an evaluation split, on the device."""
        ...

    def calibration_batches(self, n: int, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """Inputs of the first `n` training samples of a seeded order, unaugmented, normalized."""
        ...


def split_validation(
    splits: TensorSplits | FolderSplits, fraction: float
) -> tuple[TensorSplits, tuple[torch.Tensor, torch.Tensor]]:
    """Hold out `fraction` of the training set (seed 0): (remaining splits, (x_val, y_val))."""
    if isinstance(splits, FolderSplits):
        raise PcnbenchError(
            "recipe.validation_split is unsupported for folder datasets; "
            "set it to 0 or use an in-memory dataset"
        )
    n = len(splits.x_train)
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise PcnbenchError(
            f"recipe.validation_split={fraction} leaves {n_val} of {n} training samples "
            "for validation; need at least one on each side"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    rest = TensorSplits(
        x_train=splits.x_train[train],
        y_train=splits.y_train[train],
        x_test=splits.x_test,
        y_test=splits.y_test,
        mean=splits.mean,
        std=splits.std,
    )
    return rest, (splits.x_train[val], splits.y_train[val])


class TensorBatches:
    """In-memory data on the device; batches by indexing, augmentation on whole batches.

    Inputs are normalized once up front; crop padding is filled with the normalized value of
    a zero pixel, which equals padding raw images with zeros and normalizing afterwards.
    """

    def __init__(
        self,
        splits: TensorSplits,
        recipe: Recipe,
        seed: int,
        device: torch.device | str = "cpu",
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.seed = seed
        self.batch_size = recipe.batch_size
        x = splits.x_train
        self.n_train = len(x)
        self.input_shape = tuple(x.shape[1:])
        channels = len(splits.mean)
        shape = (1, channels) + (1,) * (x.dim() - 2)
        self._mean = torch.tensor(splits.mean, dtype=x.dtype, device=self.device).view(shape)
        self._std = torch.tensor(splits.std, dtype=x.dtype, device=self.device).view(shape)
        # recipe.channels_last: image batches come out channels_last, indexing keeps the format
        self._channels_last = recipe.channels_last and x.dim() == 4
        self._x = self._normalized(x)
        self._y = splits.y_train.to(self.device)
        self._eval = {"test": (self._normalized(splits.x_test), splits.y_test.to(self.device))}
        if val is not None:
            self._eval["val"] = (self._normalized(val[0]), val[1].to(self.device))
        self.splits = tuple(self._eval)
        self._padding = recipe.augmentation.crop_padding
        self._flip = recipe.augmentation.flip
        self._augment = self._padding > 0 or self._flip
        if self._augment:
            self._init_augmentation()

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        moved = x.to(self.device)
        # Normalize in place only on a private copy; never overwrite the caller's tensor.
        if moved.data_ptr() == x.data_ptr():
            normalized = (moved - self._mean) / self._std
        else:
            normalized = moved.sub_(self._mean).div_(self._std)
        if self._channels_last:
            return normalized.contiguous(memory_format=torch.channels_last)
        return normalized

    def _init_augmentation(self) -> None:
        if len(self.input_shape) != 3:
            raise PcnbenchError(
                "recipe.augmentation (crop_padding, flip) needs image inputs shaped (C, H, W); "
                f"this dataset's samples are shaped {self.input_shape}"
            )
        _, h, w = self.input_shape
        p = self._padding
        self._padded_width = w + 2 * p
        # Zero raw pixels after normalization, so the padding matches pad-then-normalize.
        self._fill = (torch.zeros_like(self._mean) - self._mean) / self._std
        self._rows = torch.arange(h)
        columns = torch.arange(w)
        self._columns = torch.stack([columns, columns.flip(0)])  # [not flipped, flipped]

    def num_batches(self) -> int:
        """Batches per epoch (the last one may be smaller)."""
        return -(-self.n_train // self.batch_size)

    def _epoch_draws(
        self, epoch: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        # Pinned, then non_blocking: the copies are queued behind the GPU's work, never waited for.
        order = self._to_device(_epoch_permutation(self.n_train, self.seed, epoch))
        if not self._augment:
            return order, None
        g = _generator(self.seed, _AUGMENT, epoch)
        offsets = torch.randint(0, 2 * self._padding + 1, (self.n_train, 2), generator=g)
        flips = torch.randint(0, 2 if self._flip else 1, (self.n_train,), generator=g)
        # Source row and column of every output row and column, per position in the epoch.
        rows = offsets[:, :1] + self._rows
        columns = self._columns[flips] + offsets[:, 1:]
        return order, (self._to_device(rows), self._to_device(columns))

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on the device, copied asynchronously (from pinned memory on CUDA)."""
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def _crop_flip(
        self, x: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self._padding
        if p:
            padded = self._fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p : p + h, p : p + w] = x
            x = padded
        # One flat index per output pixel into the padded image: a single gather.
        flat = (rows.unsqueeze(2) * self._padded_width + columns.unsqueeze(1)).view(b, 1, h * w)
        return x.flatten(2).gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)

    def batches(
        self, epoch: int, start_batch: int = 0, stop_batch: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented, normalized training batches `start_batch:stop_batch` of `epoch`."""
        order, crops = self._epoch_draws(epoch)
        size, n = self.batch_size, self.n_train
        stop = self.num_batches() if stop_batch is None else stop_batch
        x, y = self._x, self._y
        for start in range(start_batch * size, min(stop * size, n), size):
            index = order[start : start + size]
            if crops is None:
                yield x[index], y[index]
            else:
                end = start + size
                yield self._crop_flip(x[index], crops[0][start:end], crops[1][start:end]), y[index]

    def eval_batches(
        self, split: str = "test", batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Unaugmented, normalized (x, y) batches of an evaluation split, on the device."""
        if split not in self._eval:
            raise ValueError(f"no {split!r} split to evaluate on (have {', '.join(self.splits)})")
        x, y = self._eval[split]
        size = batch_size or self.batch_size
        for start in range(0, len(x), size):
            yield x[start : start + size], y[start : start + size]

    def calibration_batches(self, n: int, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """Inputs of the first `n` training samples of a seeded order, unaugmented, normalized."""
        index = _calibration_indices(self.n_train, n, self.seed).to(self.device)
        size = batch_size or self.batch_size
        for start in range(0, len(index), size):
            yield self._x[index[start : start + size]]


class _EpochSampler(Sampler):
    """Positions `start:stop` of an epoch's seeded permutation, each paired with its own seed."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.start, self.stop = 0, 0, n

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = _epoch_permutation(self.n, self.seed, self.epoch)[self.start : self.stop]
        base = derive_seed(self.seed, _AUGMENT, self.epoch)
        return zip(order.tolist(), range(base + self.start, base + self.stop), strict=True)


class _Seeded(Dataset):
    """Reseeds torch's RNG per sample so a dataset's own random augmentation is reproducible."""

    def __init__(self, dataset: Dataset, in_main_process: bool) -> None:
        self.dataset = dataset
        self.in_main_process = in_main_process

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        # The CPU generator only: torch.manual_seed also queues CUDA seeding, far slower.
        generator = torch.default_generator
        if not self.in_main_process:
            generator.manual_seed(seed)
            return self.dataset[index]
        # Without workers the global RNG is the session's (dropout etc.); leave it untouched.
        saved = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(saved)


class FolderBatches:
    """Map-style datasets through DataLoaders; the sampler's order is seeded by (seed, epoch).

    Each sample's augmentation is seeded by its position in the epoch, so an epoch started
    mid-way draws the same crops and flips as one run from its beginning.
    """

    def __init__(
        self,
        splits: FolderSplits,
        recipe: Recipe,
        seed: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.seed = seed
        self.batch_size = recipe.batch_size
        self.n_train = len(splits.train)  # type: ignore[arg-type]
        self.input_shape = tuple(splits.calibration[0][0].shape)
        self.splits = ("test",)
        self._data = splits
        workers = splits.num_workers
        self._loader_options: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": workers > 0,
            # A private generator: DataLoader would otherwise draw worker seeds from the global
            # RNG, and training must not depend on how often data was loaded.
            "generator": torch.Generator().manual_seed(derive_seed(seed, _WORKERS)),
        }
        self._sampler = _EpochSampler(self.n_train, seed)
        self._train = DataLoader(
            _Seeded(splits.train, in_main_process=workers == 0),
            batch_size=self.batch_size,
            sampler=self._sampler,
            **self._loader_options,
        )
        self._test: DataLoader | None = None

    def num_batches(self) -> int:
        """Batches per epoch (the last one may be smaller)."""
        return -(-self.n_train // self.batch_size)

    def _to_device(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batches(
        self, epoch: int, start_batch: int = 0, stop_batch: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented, normalized training batches `start_batch:stop_batch` of `epoch`."""
        stop = self.num_batches() if stop_batch is None else stop_batch
        self._sampler.epoch = epoch
        # Skipped batches are cut from the sampler, so their samples are never loaded.
        self._sampler.start = min(start_batch * self.batch_size, self.n_train)
        self._sampler.stop = min(stop * self.batch_size, self.n_train)
        for batch in self._train:
            yield self._to_device(batch)

    def eval_batches(
        self, split: str = "test", batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Unaugmented, normalized (x, y) batches of an evaluation split, on the device."""
        if split != "test":
            raise ValueError(f"no {split!r} split to evaluate on (have test)")
        if batch_size is not None:
            loader = DataLoader(self._data.test, batch_size=batch_size, **self._loader_options)
        else:
            if self._test is None:
                self._test = DataLoader(
                    self._data.test, batch_size=self.batch_size, **self._loader_options
                )
            loader = self._test
        for batch in loader:
            yield self._to_device(batch)

    def calibration_batches(self, n: int, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """Inputs of the first `n` training samples of a seeded order, unaugmented, normalized."""
        index = _calibration_indices(self.n_train, n, self.seed).tolist()
        loader = DataLoader(
            self._data.calibration,
            batch_size=batch_size or self.batch_size,
            sampler=index,
            num_workers=self._data.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(derive_seed(self.seed, _WORKERS)),
        )
        for batch in loader:
            yield batch[0].to(self.device, non_blocking=True)


def make_source(
    data: TensorSplits | FolderSplits,
    recipe: Recipe,
    seed: int,
    device: torch.device | str = "cpu",
) -> TensorBatches | FolderBatches:
    """The batch source for `data` under `recipe`, with its validation split taken out."""
    if isinstance(data, FolderSplits):
        if recipe.validation_split > 0:
            split_validation(data, recipe.validation_split)  # raises: unsupported
        return FolderBatches(data, recipe, seed, device)
    val = None
    if recipe.validation_split > 0:
        data, val = split_validation(data, recipe.validation_split)
    return TensorBatches(data, recipe, seed, device, val=val)
