"""Checks that a dataset's sample shape suits an image model."""

from __future__ import annotations

from pcnbench.api import DataInfo, ParamError


def image_shape(info: DataInfo, model: str) -> tuple[int, int, int]:
    """Return (channels, height, width) of `info`, or raise ParamError if it is not an image."""
    if len(info.input_shape) != 3:
        raise ParamError(
            None,
            f"{model} expects image inputs shaped (channels, height, width); "
            f"the dataset gives {tuple(info.input_shape)}",
        )
    c, h, w = info.input_shape
    return c, h, w
