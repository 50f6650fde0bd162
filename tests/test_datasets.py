"""The built-in datasets: shapes, ranges, splits, on-disk formats and missing-data errors."""

from __future__ import annotations

import math
import pickle
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pydantic
import pytest
import torch

from pcnbench.api import (
    DatasetMissingError,
    DatasetPlugin,
    FolderSplits,
    ParamError,
    PcnbenchError,
    TensorSplits,
)
from pcnbench.cells import Choice, canonical, locator_fields
from pcnbench_plugins.datasets import register_datasets
from pcnbench_plugins.datasets.digits import Digits, read_digits, stratified_split
from pcnbench_plugins.datasets.imagenet import IMAGENET_MEAN, IMAGENET_STD, Imagenet
from pcnbench_plugins.datasets.synthetic import Synthetic
from pcnbench_plugins.datasets.torchvision_sets import Cifar10, FashionMnist, Mnist
from tests.conftest import python_output


def _registered() -> dict[str, DatasetPlugin]:
    found: list[DatasetPlugin] = []
    register_datasets(found.append)
    return {dataset.name: dataset for dataset in found}


def _assert_channel_stats(splits: TensorSplits) -> None:
    # The session normalizes with these, so they must describe the training split per channel.
    expected_mean = splits.x_train.double().mean(dim=(0, 2, 3))
    expected_std = splits.x_train.double().std(dim=(0, 2, 3), correction=0)
    assert splits.mean == pytest.approx(expected_mean.tolist(), abs=1e-9)
    assert splits.std == pytest.approx(expected_std.tolist(), abs=1e-9)


def test_register_datasets_registers_every_builtin_with_info_that_needs_no_data(
    tmp_path: Path,
) -> None:
    datasets = _registered()
    assert set(datasets) == {
        "digits",
        "mnist1d",
        "synthetic",
        "cifar10",
        "cifar100",
        "mnist",
        "fashion_mnist",
        "imagenet",
    }
    # `root` points nowhere: info must answer from constants, not from files.
    nowhere = str(tmp_path / "absent")
    expected = {
        "digits": ({}, (1, 8, 8), 10),
        "mnist1d": ({}, (1, 40), 10),
        "synthetic": ({}, (1, 8, 8), 4),
        "cifar10": ({"root": nowhere}, (3, 32, 32), 10),
        "cifar100": ({"root": nowhere}, (3, 32, 32), 100),
        "mnist": ({"root": nowhere}, (1, 28, 28), 10),
        "fashion_mnist": ({"root": nowhere}, (1, 28, 28), 10),
        "imagenet": ({"root": nowhere}, (3, 224, 224), 1000),
    }
    for name, (raw, shape, classes) in expected.items():
        dataset = datasets[name]
        info = dataset.info(dataset.Params(**raw))
        assert (info.input_shape, info.num_classes) == (shape, classes), name


def test_params_reject_unknown_keys_and_out_of_range_values() -> None:
    with pytest.raises(pydantic.ValidationError):
        Digits.Params(test_fraction=1.0)
    with pytest.raises(pydantic.ValidationError):
        Digits.Params(split_sed=1)
    with pytest.raises(pydantic.ValidationError):
        Synthetic.Params(shape=[1, 0, 8])
    with pytest.raises(pydantic.ValidationError):
        Imagenet.Params()  # root is required
    assert Cifar10.Params() == Cifar10.Params(root="data", download=False)
    with pytest.raises(pydantic.ValidationError):
        Imagenet.Params(root="x", workers=-1)  # the Locator marker keeps the constraint


def test_builtin_datasets_leave_where_and_how_data_is_read_out_of_cell_ids(
    tmp_path: Path,
) -> None:
    datasets = _registered()
    located = {"root", "download"}
    assert {name: locator_fields(d.Params) for name, d in datasets.items()} == {
        "digits": frozenset(),
        "mnist1d": frozenset(),
        "synthetic": frozenset(),
        "cifar10": located,
        "cifar100": located,
        "mnist": located,
        "fashion_mnist": located,
        "imagenet": {"root", "workers"},
    }
    cifar = Choice("cifar10", Cifar10.Params(root=str(tmp_path), download=True), 0, {})
    assert canonical(cifar, for_id=True) == {"name": "cifar10", "params": {}}
    assert canonical(cifar, for_id=False)["params"] == {"root": str(tmp_path), "download": True}
    params = Imagenet.Params(root=str(tmp_path), num_classes=100, workers=2)
    imagenet = Choice("imagenet", params, 0, {})
    assert canonical(imagenet, for_id=True)["params"] == {"num_classes": 100}
    assert canonical(imagenet, for_id=False)["params"] == {
        "root": str(tmp_path),
        "num_classes": 100,
        "workers": 2,
    }


# digits ---------------------------------------------------------------------------------------


def test_digits_has_1797_samples_of_1x8x8_in_unit_range_and_10_classes() -> None:
    splits = Digits().load(Digits.Params())
    assert len(splits.x_train) + len(splits.x_test) == 1797
    assert len(splits.x_test) == math.ceil(0.2 * 1797)
    assert splits.x_train.shape[1:] == (1, 8, 8) and splits.x_test.shape[1:] == (1, 8, 8)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    both = torch.cat([splits.x_train, splits.x_test])
    # Pixel values 0..16 divided by 16: both ends occur.
    assert both.min().item() == 0.0 and both.max().item() == 1.0
    assert set(splits.y_train.tolist()) == set(range(10)) == set(splits.y_test.tolist())
    _assert_channel_stats(splits)


def test_digits_split_is_stratified_by_class() -> None:
    splits = Digits().load(Digits.Params(test_fraction=0.3))
    train_counts = torch.bincount(splits.y_train, minlength=10)
    test_counts = torch.bincount(splits.y_test, minlength=10)
    for train_n, test_n in zip(train_counts.tolist(), test_counts.tolist(), strict=True):
        assert abs(test_n - 0.3 * (train_n + test_n)) <= 1


def test_digits_split_is_deterministic_in_split_seed() -> None:
    first = Digits().load(Digits.Params(split_seed=3))
    again = Digits().load(Digits.Params(split_seed=3))
    other = Digits().load(Digits.Params(split_seed=4))
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.x_train, other.x_train)


@pytest.mark.parametrize("test_fraction", [0.2, 0.013, 0.05, 0.33, 0.5, 0.77, 0.9])
def test_digits_split_and_samples_are_sklearns(test_fraction: float) -> None:
    """Same samples, labels and split as `load_digits` + `train_test_split(stratify=y)`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    reference = load_digits()
    images, labels = read_digits()
    assert np.array_equal(images, reference.images)
    assert np.array_equal(labels, reference.target)
    for seed in range(12):
        ours = stratified_split(labels, test_fraction, seed)
        theirs = train_test_split(
            np.arange(len(labels)),
            test_size=test_fraction,
            random_state=seed,
            stratify=reference.target,
        )
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_digits_load_leaves_sklearn_unimported() -> None:
    """Importing scikit-learn costs about a second (SciPy); reading its file does not."""
    probe = (
        "import sys\n"
        "from pcnbench_plugins.datasets.digits import read_digits, stratified_split\n"
        "images, labels = read_digits()\n"
        "train, test = stratified_split(labels, 0.2, 0)\n"
        "assert len(train) + len(test) == 1797\n"
        "print(any(m.split('.')[0] in ('sklearn', 'scipy') for m in sys.modules))\n"
    )
    assert python_output(probe, timeout=120).strip() == "False"


def test_digits_split_too_small_for_the_classes_names_the_sizes() -> None:
    with pytest.raises(PcnbenchError, match=r"fewer samples than the 10 classes \(1795 training"):
        Digits().load(Digits.Params(test_fraction=0.001))


# synthetic ------------------------------------------------------------------------------------


def test_synthetic_has_the_requested_sizes_shape_and_balanced_classes() -> None:
    params = Synthetic.Params(n_train=60, n_test=30, shape=[3, 4, 5], classes=3)
    splits = Synthetic().load(params)
    assert splits.x_train.shape == (60, 3, 4, 5) and splits.x_test.shape == (30, 3, 4, 5)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert torch.bincount(splits.y_train).tolist() == [20, 20, 20]
    assert torch.bincount(splits.y_test).tolist() == [10, 10, 10]
    assert splits.x_train.min() >= 0.0 and splits.x_train.max() <= 1.0
    assert len(splits.mean) == 3 and len(splits.std) == 3
    _assert_channel_stats(splits)


def test_synthetic_is_deterministic_in_seed_and_test_set_ignores_n_train() -> None:
    first = Synthetic().load(Synthetic.Params(seed=1))
    again = Synthetic().load(Synthetic.Params(seed=1))
    other = Synthetic().load(Synthetic.Params(seed=2))
    bigger = Synthetic().load(Synthetic.Params(seed=1, n_train=1024))
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_train, again.y_train)
    assert not torch.equal(first.x_train, other.x_train)
    assert torch.equal(first.x_test, bigger.x_test) and torch.equal(first.y_test, bigger.y_test)


def test_synthetic_classes_are_separable_by_nearest_class_mean() -> None:
    splits = Synthetic().load(Synthetic.Params())
    flat_train = splits.x_train.flatten(1)
    means = torch.stack([flat_train[splits.y_train == c].mean(0) for c in range(4)])
    predicted = torch.cdist(splits.x_test.flatten(1), means).argmin(1)
    assert (predicted == splits.y_test).float().mean().item() > 0.95


# CIFAR-10 -------------------------------------------------------------------------------------

CIFAR_TRAIN_PER_BATCH = 4
CIFAR_TEST = 3


def _write_cifar10(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """Write a tiny cifar-10-batches-py folder; return the train/test rows and labels written."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(name: str, n: int, first_label: int) -> tuple[np.ndarray, list[int]]:
        # Each row is 3072 bytes: the red, green and blue 32×32 planes, row-major.
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(first_label + i) % 10 for i in range(n)]
        # The real files are Python 2 pickles whose str keys torchvision reads as str (latin1).
        entry = {"batch_label": name, "labels": labels, "data": data, "filenames": [""] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        return data, labels

    rows, labels = [], []
    for i in range(1, 6):
        data, batch_labels = batch(f"data_batch_{i}", CIFAR_TRAIN_PER_BATCH, i)
        rows.append(data)
        labels += batch_labels
    test_rows, test_labels = batch("test_batch", CIFAR_TEST, 7)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return np.concatenate(rows), labels, test_rows, test_labels


def test_cifar10_loads_generated_batches_with_pixels_and_labels_round_tripped(
    tmp_path: Path, skip_cifar_md5: None
) -> None:
    rows, labels, test_rows, test_labels = _write_cifar10(tmp_path)
    splits = Cifar10().load(Cifar10.Params(root=str(tmp_path)))
    assert splits.x_train.shape == (5 * CIFAR_TRAIN_PER_BATCH, 3, 32, 32)
    assert splits.x_test.shape == (CIFAR_TEST, 3, 32, 32)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert splits.x_train.min() >= 0.0 and splits.x_train.max() <= 1.0
    assert splits.y_train.tolist() == labels and splits.y_test.tolist() == test_labels
    # Scaling back by 255 must give exactly the bytes written, in channel-plane order.
    written = torch.from_numpy(rows).reshape(-1, 3, 32, 32)
    assert torch.equal((splits.x_train * 255).round().to(torch.uint8), written)
    written_test = torch.from_numpy(test_rows).reshape(-1, 3, 32, 32)
    assert torch.equal((splits.x_test * 255).round().to(torch.uint8), written_test)
    assert splits.x_train[0, 1, 2, 3].item() == pytest.approx(rows[0, 1024 + 2 * 32 + 3] / 255)
    _assert_channel_stats(splits)


def test_cifar10_missing_without_download_names_folder_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError) as raised:
        Cifar10().load(Cifar10.Params(root=str(tmp_path)))
    message = str(raised.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "download: true" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_cifar10_files_failing_torchvision_checks_raise_dataset_missing_error(
    tmp_path: Path,
) -> None:
    # Every file is present, but none matches torchvision's md5 sums.
    _write_cifar10(tmp_path)
    with pytest.raises(DatasetMissingError) as raised:
        Cifar10().load(Cifar10.Params(root=str(tmp_path)))
    assert str(tmp_path / "cifar-10-batches-py") in str(raised.value)
    assert "corrupted" in str(raised.value)


def test_cifar10_failed_download_raises_dataset_missing_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError) as raised:
        Cifar10().load(Cifar10.Params(root=str(tmp_path), download=True))
    assert "network unreachable" in str(raised.value)
    assert str(tmp_path / "cifar-10-batches-py") in str(raised.value)


# MNIST ----------------------------------------------------------------------------------------


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    # Big-endian headers: magic 0x00000803 (uint8, 3 dims) for images, 0x00000801 for labels.
    n, height, width = images.shape
    header = struct.pack(">IIII", 0x803, n, height, width)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + labels.tobytes()
    )


@pytest.mark.parametrize(
    ("plugin", "subfolder"), [(Mnist, "MNIST"), (FashionMnist, "FashionMNIST")]
)
def test_mnist_loads_generated_idx_files_with_pixels_and_labels_round_tripped(
    tmp_path: Path, plugin: type[DatasetPlugin], subfolder: str
) -> None:
    raw = tmp_path / subfolder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train_images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    test_images = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    train_labels = np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8)
    test_labels = np.array([5, 8], dtype=np.uint8)
    _write_idx(raw, "train", train_images, train_labels)
    _write_idx(raw, "t10k", test_images, test_labels)

    splits = plugin().load(plugin.Params(root=str(tmp_path)))
    assert splits.x_train.shape == (6, 1, 28, 28) and splits.x_test.shape == (2, 1, 28, 28)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert splits.x_train.min() >= 0.0 and splits.x_train.max() <= 1.0
    assert splits.y_train.tolist() == [0, 1, 2, 3, 4, 9] and splits.y_test.tolist() == [5, 8]
    restored = (splits.x_train[:, 0] * 255).round().to(torch.uint8)
    assert torch.equal(restored, torch.from_numpy(train_images))
    restored_test = (splits.x_test[:, 0] * 255).round().to(torch.uint8)
    assert torch.equal(restored_test, torch.from_numpy(test_images))
    _assert_channel_stats(splits)


def test_mnist_missing_without_download_names_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError) as raised:
        Mnist().load(Mnist.Params(root=str(tmp_path)))
    message = str(raised.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "download: true" in message


# ImageNet folders -----------------------------------------------------------------------------

COLORS = {"cat": (255, 0, 0), "dog": (0, 128, 255)}


def _normalized(color: tuple[int, int, int]) -> list[float]:
    return [(c / 255 - m) / s for c, m, s in zip(color, IMAGENET_MEAN, IMAGENET_STD, strict=True)]


def _write_image_folder(root: Path, per_class: dict[str, int]) -> None:
    from PIL import Image

    for split, count in per_class.items():
        for name, color in COLORS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                # One solid colour per class, so the normalized center crop is known exactly.
                Image.new("RGB", (40 + i, 30), color).save(folder / f"{i}.png")


def test_imagenet_loads_image_folders_as_normalized_224_crops(tmp_path: Path) -> None:
    _write_image_folder(tmp_path, {"train": 3, "val": 1})
    splits = Imagenet().load(Imagenet.Params(root=str(tmp_path), num_classes=2, workers=0))
    assert isinstance(splits, FolderSplits)
    assert (len(splits.train), len(splits.test), len(splits.calibration)) == (6, 2, 6)
    assert splits.num_workers == 0
    image, label = splits.train[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 0
    test_image, test_label = splits.test[1]
    assert test_image.shape == (3, 224, 224) and test_label == 1
    expected = _normalized(COLORS["dog"])
    assert test_image.mean(dim=(1, 2)).tolist() == pytest.approx(expected, abs=1e-5)


def test_imagenet_calibration_is_unaugmented_and_leaves_train_augmented(tmp_path: Path) -> None:
    _write_image_folder(tmp_path, {"train": 2, "val": 1})
    splits = Imagenet().load(Imagenet.Params(root=str(tmp_path), num_classes=2, workers=0))
    first, label = splits.calibration[3]
    again, _ = splits.calibration[3]
    assert label == 1 and torch.equal(first, again)
    expected = _normalized(COLORS["dog"])
    assert first.mean(dim=(1, 2)).tolist() == pytest.approx(expected, abs=1e-5)
    # The calibration copy must not have swapped the training transform out.
    train_steps = [type(step).__name__ for step in splits.train.transform.transforms]
    assert "RandomResizedCrop" in train_steps
    assert splits.train.transforms.transform is splits.train.transform


def test_imagenet_missing_val_folder_names_path_and_layout(tmp_path: Path) -> None:
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(DatasetMissingError) as raised:
        Imagenet().load(Imagenet.Params(root=str(tmp_path)))
    assert str(tmp_path / "val") in str(raised.value)
    assert "<root>/val/<class>/<image>" in str(raised.value)


def test_imagenet_val_classes_differing_from_train_is_an_error(tmp_path: Path) -> None:
    _write_image_folder(tmp_path, {"train": 1, "val": 1})
    (tmp_path / "val" / "dog" / "0.png").rename(tmp_path / "val" / "cat" / "1.png")
    (tmp_path / "val" / "dog").rmdir()
    with pytest.raises(DatasetMissingError, match="only in train: \\['dog'\\]"):
        Imagenet().load(Imagenet.Params(root=str(tmp_path), num_classes=2))


def test_imagenet_num_classes_must_match_class_folders(tmp_path: Path) -> None:
    _write_image_folder(tmp_path, {"train": 1, "val": 1})
    with pytest.raises(ParamError) as raised:
        Imagenet().load(Imagenet.Params(root=str(tmp_path)))
    assert raised.value.key == "num_classes" and "2 class folders" in raised.value.message
