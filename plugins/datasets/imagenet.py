"""ImageNet (ILSVRC-2012) read from class folders, with the standard 224-pixel transforms."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field

from pcnbench.api import (
    DataInfo,
    DatasetMissingError,
    DatasetPlugin,
    FolderSplits,
    Locator,
    ParamError,
    Params,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_LAYOUT = (
    "expected <root>/train/<class>/<image> and <root>/val/<class>/<image>, with the same "
    "class folders (e.g. n01440764) in both; the validation images must be sorted into class "
    "folders, for example with the valprep.sh script from the PyTorch ImageNet example"
)


class ImagenetParams(Params):
    """Where the class folders are, how many classes they hold, and how many loader workers.

    `root` and `workers` are not in cell ids: each sample's augmentation is seeded by its place
    in the epoch, so the worker count does not change what is trained on.
    """

    root: Annotated[str, Locator()] = Field(description="folder with train/ and val/ class folders")
    num_classes: int = Field(1000, ge=1, description="class folders in train/ and val/")
    workers: Annotated[int, Locator()] = Field(8, ge=0, description="data loader processes")


class Imagenet(DatasetPlugin):
    """ImageFolder datasets at `root/train` and `root/val`, yielding normalized 3×224×224 images."""

    name = "imagenet"
    Params = ImagenetParams

    def info(self, params: ImagenetParams) -> DataInfo:
        """3×224×224 crops; `num_classes` classes."""
        return DataInfo(input_shape=(3, 224, 224), num_classes=params.num_classes)

    def prepare(self, params: ImagenetParams) -> None:
        """Check the folder layout (train and val class folders) without reading any image."""
        self.check_layout(params)

    def check_layout(self, params: ImagenetParams) -> tuple[Path, Path]:
        """(train, val) folders, once both hold the same `num_classes` class folders."""
        root = Path(params.root)
        train_dir, val_dir = root / "train", root / "val"
        classes = []
        for folder in (train_dir, val_dir):
            if not folder.is_dir():
                raise DatasetMissingError(f"imagenet: no folder {folder}; {_LAYOUT}.")
            # the class folders as ImageFolder finds them: every subfolder, sorted by name
            classes.append(sorted(e.name for e in os.scandir(folder) if e.is_dir()))
        train, val = classes
        if not train:
            raise DatasetMissingError(f"imagenet: no class folders in {train_dir}; {_LAYOUT}.")
        if val != train:
            # ImageFolder numbers classes by sorted folder name, so differing sets shift labels.
            only_train = sorted(set(train) - set(val))
            only_val = sorted(set(val) - set(train))
            raise DatasetMissingError(
                f"imagenet: class folders differ between {train_dir} and {val_dir} "
                f"(only in train: {only_train[:5]}, only in val: {only_val[:5]}); {_LAYOUT}."
            )
        if len(train) != params.num_classes:
            raise ParamError(
                "num_classes",
                f"is {params.num_classes} but {train_dir} holds {len(train)} class folders",
            )
        return train_dir, val_dir

    def load(self, params: ImagenetParams) -> FolderSplits:
        """Index the class folders; train is augmented, test and calibration are center crops."""
        from torchvision import datasets, transforms

        train_dir, val_dir = self.check_layout(params)
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
        eval_transform = transforms.Compose(
            [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
        )
        try:
            train = datasets.ImageFolder(str(train_dir), transform=train_transform)
            test = datasets.ImageFolder(str(val_dir), transform=eval_transform)
        except FileNotFoundError as error:
            raise DatasetMissingError(f"imagenet: {error}; {_LAYOUT}.") from None
        # A shallow copy shares the indexed file list, sparing a second scan of 1.28M files.
        calibration = copy.copy(train)
        calibration.transform = eval_transform
        calibration.transforms = copy.copy(train.transforms)
        calibration.transforms.transform = eval_transform
        return FolderSplits(
            train=train, test=test, calibration=calibration, num_workers=params.workers
        )
