"""ImageNet (ILSVRC-2012) read from class folders, with the standard 224-pixel transforms."""

from __future__ import annotations

import copy
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

    root: Annotated[str, Locator()]
    num_classes: int = Field(1000, ge=1)
    workers: Annotated[int, Locator()] = Field(8, ge=0)


class Imagenet(DatasetPlugin):
    """ImageFolder datasets at `root/train` and `root/val`, yielding normalized 3×224×224 images."""

    name = "imagenet"
    Params = ImagenetParams

    def info(self, params: ImagenetParams) -> DataInfo:
        """3×224×224 crops; `num_classes` classes."""
        return DataInfo(input_shape=(3, 224, 224), num_classes=params.num_classes)

    def load(self, params: ImagenetParams) -> FolderSplits:
        """Index the class folders; train is augmented, test and calibration are center crops."""
        from torchvision import datasets, transforms

        root = Path(params.root)
        train_dir, val_dir = root / "train", root / "val"
        for folder in (train_dir, val_dir):
            if not folder.is_dir():
                raise DatasetMissingError(f"imagenet: no folder {folder}; {_LAYOUT}.")
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
        if test.classes != train.classes:
            # ImageFolder numbers classes by sorted folder name, so differing sets shift labels.
            only_train = sorted(set(train.classes) - set(test.classes))
            only_val = sorted(set(test.classes) - set(train.classes))
            raise DatasetMissingError(
                f"imagenet: class folders differ between {train_dir} and {val_dir} "
                f"(only in train: {only_train[:5]}, only in val: {only_val[:5]}); {_LAYOUT}."
            )
        if len(train.classes) != params.num_classes:
            raise ParamError(
                "num_classes",
                f"is {params.num_classes} but {train_dir} holds {len(train.classes)} class folders",
            )
        # A shallow copy shares the indexed file list, sparing a second scan of 1.28M files.
        calibration = copy.copy(train)
        calibration.transform = eval_transform
        calibration.transforms = copy.copy(train.transforms)
        calibration.transforms.transform = eval_transform
        return FolderSplits(
            train=train, test=test, calibration=calibration, num_workers=params.workers
        )
