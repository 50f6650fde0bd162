"""CIFAR-10/100, MNIST and Fashion-MNIST through torchvision, held in memory as tensors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field

from pcnbench.api import (
    DataInfo,
    DatasetMissingError,
    DatasetPlugin,
    Locator,
    Params,
    TensorSplits,
)

from .stats import channel_stats

if TYPE_CHECKING:
    import torch

# What torchvision raises on absent, corrupt or undownloadable files (URLError is an OSError).
_TORCHVISION_FAILURES = (
    RuntimeError,
    OSError,
    ValueError,
    TypeError,
    AssertionError,
    EOFError,
    pickle.UnpicklingError,
)

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class TorchvisionParams(Params):
    """Where the dataset lives and whether it may be downloaded there (neither is in cell ids)."""

    root: Annotated[str, Locator()] = Field("data", description="folder holding the files")
    download: Annotated[bool, Locator()] = Field(
        False, description="download the files into `root` when absent"
    )


class TorchvisionDataset(DatasetPlugin):
    """A torchvision dataset read whole from its `.data`/`.targets` arrays into tensors."""

    Params = TorchvisionParams

    torchvision_class: ClassVar[str]  # attribute name in torchvision.datasets
    subfolder: ClassVar[str]  # where torchvision keeps the files, relative to `root`
    files: ClassVar[tuple[str, ...]]  # what torchvision reads from `subfolder`
    source: ClassVar[str]  # how to get the files by hand
    input_shape: ClassVar[tuple[int, int, int]]
    num_classes: ClassVar[int]

    def info(self, params: TorchvisionParams) -> DataInfo:
        """The dataset's fixed sample shape and class count."""
        return DataInfo(input_shape=self.input_shape, num_classes=self.num_classes)

    def folder(self, params: TorchvisionParams) -> Path:
        """The directory torchvision reads the files from."""
        return Path(params.root) / self.subfolder

    def missing(self, params: TorchvisionParams) -> list[str]:
        """The files torchvision reads that are not in `folder(params)`."""
        folder = self.folder(params)
        return [name for name in self.files if not (folder / name).is_file()]

    def prepare(self, params: TorchvisionParams) -> None:
        """Download absent files if `download` is set, then open the test split once.

        Opening runs torchvision's own checks (CIFAR: md5 sums of every file), so absent,
        corrupt or undownloadable data is reported once, before any cell trains.
        """
        missing = self.missing(params)
        if missing and not params.download:
            raise DatasetMissingError(self._absent(params, missing))
        if missing:
            self._open(params, train=True, download=True)
        self._open(params, train=False, download=False)

    def load(self, params: TorchvisionParams) -> TensorSplits:
        """Load both splits (downloading first if `download` is set) as float tensors in [0, 1]."""
        missing = self.missing(params)
        if missing and not params.download:
            raise DatasetMissingError(self._absent(params, missing))
        x_train, y_train = self._read(params, train=True)
        x_test, y_test = self._read(params, train=False)
        mean, std = channel_stats(x_train)
        return TensorSplits(x_train, y_train, x_test, y_test, mean, std)

    def _absent(self, params: TorchvisionParams, missing: list[str]) -> str:
        return (
            f"{self.name}: files not found in {self.folder(params)}: missing "
            f"{', '.join(missing)}. Set `download: true` in the suite's dataset params, or "
            f"place {self.source} there."
        )

    def _open(self, params: TorchvisionParams, train: bool, download: bool) -> Any:
        """The torchvision dataset of one split; its failures become DatasetMissingError."""
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, self.torchvision_class)
        try:
            return dataset_class(root=params.root, train=train, download=download)
        except _TORCHVISION_FAILURES as error:
            folder = self.folder(params)
            if download:
                advice = (
                    f"downloading into {folder} failed ({error}); are you offline? Run again with "
                    f"network access, or place {self.source} there."
                )
            elif params.download:
                advice = (
                    f"torchvision could not read the files in {folder} ({error}). Delete the "
                    f"folder so that `download: true` fetches them again, or place {self.source} "
                    "there."
                )
            else:
                advice = (
                    f"torchvision could not read the files in {folder} ({error}). Delete the "
                    "folder and set `download: true` in the suite's dataset params, or place "
                    f"{self.source} there."
                )
            raise DatasetMissingError(f"{self.name}: {advice}") from None

    def _read(self, params: TorchvisionParams, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        # Only the first split downloads; the second finds the files in place.
        dataset = self._open(params, train, download=params.download and train)
        x = self.to_images(dataset.data)
        y = torch.as_tensor(dataset.targets, dtype=torch.int64)
        return x, y

    @staticmethod
    def to_images(data: Any) -> torch.Tensor:
        """Turn torchvision's uint8 `.data` into float32 (N, C, H, W) in [0, 1]."""
        raise NotImplementedError


class _Cifar(TorchvisionDataset):
    input_shape = (3, 32, 32)

    @staticmethod
    def to_images(data: Any) -> torch.Tensor:
        """uint8 (N, 32, 32, 3) numpy array → float32 (N, 3, 32, 32) in [0, 1]."""
        import torch

        # Make the uint8 copy contiguous, so the 4× larger float tensor is built only once.
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
        return images.to(torch.float32).div_(255.0)


class _Mnist(TorchvisionDataset):
    input_shape = (1, 28, 28)
    num_classes = 10
    files = _MNIST_FILES

    @staticmethod
    def to_images(data: Any) -> torch.Tensor:
        """uint8 (N, 28, 28) tensor → float32 (N, 1, 28, 28) in [0, 1]."""
        import torch

        return data.unsqueeze(1).to(torch.float32).div_(255.0)


class Cifar10(_Cifar):
    """CIFAR-10: 50,000 training and 10,000 test 3×32×32 colour images in 10 classes."""

    name = "cifar10"
    torchvision_class = "CIFAR10"
    subfolder = "cifar-10-batches-py"
    files = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    source = (
        "the extracted python-version archive from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    )
    num_classes = 10


class Cifar100(_Cifar):
    """CIFAR-100: 50,000 training and 10,000 test 3×32×32 colour images in 100 fine classes."""

    name = "cifar100"
    torchvision_class = "CIFAR100"
    subfolder = "cifar-100-python"
    files = ("train", "test", "meta")
    source = (
        "the extracted python-version archive from "
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    )
    num_classes = 100


class Mnist(_Mnist):
    """MNIST: 60,000 training and 10,000 test 1×28×28 handwritten digits."""

    name = "mnist"
    torchvision_class = "MNIST"
    subfolder = "MNIST/raw"
    source = (
        f"the four files ({', '.join(_MNIST_FILES)}) from "
        "https://ossci-datasets.s3.amazonaws.com/mnist/, gunzipped,"
    )


class FashionMnist(_Mnist):
    """Fashion-MNIST: 60,000 training and 10,000 test 1×28×28 images of clothing in 10 classes."""

    name = "fashion_mnist"
    torchvision_class = "FashionMNIST"
    subfolder = "FashionMNIST/raw"
    source = (
        f"the four files ({', '.join(_MNIST_FILES)}) from "
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/, gunzipped,"
    )
