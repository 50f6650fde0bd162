"""Every torchvision classification model, registered as ``torchvision:NAME``.

The names are a `pcnbench.api.Family`: torchvision (slow to import) is imported only when a
suite names one of its models, or something lists every model name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from pcnbench.api import DataInfo, Family, ModelPlugin, ParamError, Params

from .shapes import image_shape

if TYPE_CHECKING:
    from torch import nn

PREFIX = "torchvision:"

# Without these, googlenet and inception_v3 return auxiliary outputs in training mode
# (not a logits tensor) and warn about a changing default initialization.
_LOGITS_ONLY: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


class TorchvisionParams(Params):
    """`weights` names pretrained weights (None: random init); `kwargs` go to the builder."""

    weights: str | None = Field(
        None, description="pretrained weights, e.g. DEFAULT or IMAGENET1K_V1; null: random init"
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="more keyword arguments for the torchvision builder"
    )

    @field_validator("kwargs")
    @classmethod
    def _no_reserved_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        for key in ("num_classes", "weights"):
            if key in kwargs:
                raise ValueError(
                    f"kwargs must not set {key!r}: "
                    + ("it comes from the dataset" if key == "num_classes" else "use `weights`")
                )
        return kwargs


class TorchvisionModel(ModelPlugin):
    """One torchvision classifier; `arch` is its torchvision name, e.g. resnet18."""

    Params = TorchvisionParams

    def __init__(self, arch: str) -> None:
        self.arch = arch
        # Set per instance: one class serves every architecture torchvision lists.
        self.name = f"{PREFIX}{arch}"

    def build(self, params: TorchvisionParams, info: DataInfo) -> nn.Module:
        """Return torchvision's `arch` for `info.num_classes`; downloads only named weights."""
        import torchvision

        channels, _, _ = image_shape(info, self.name)
        if channels != 3:
            raise ParamError(
                None,
                f"{self.name} expects 3-channel images; the dataset has {channels} channel(s)",
            )
        if params.weights is not None:
            self._check_weights(params.weights, info.num_classes)
        kwargs = {**_LOGITS_ONLY.get(self.arch, {}), **params.kwargs}
        try:
            # The builder accepts "IMAGENET1K_V1", "DEFAULT" or "ResNet18_Weights.IMAGENET1K_V1".
            return torchvision.models.get_model(
                self.arch, weights=params.weights, num_classes=info.num_classes, **kwargs
            )
        except (TypeError, ValueError) as error:
            raise ParamError("kwargs", f"{self.name}: {error}") from error

    def _check_weights(self, weights: str, num_classes: int) -> None:
        """Raise ParamError unless `weights` names weights of `arch` with `num_classes` outputs."""
        import torchvision

        enum = torchvision.models.get_model_weights(self.arch)
        try:
            resolved = enum.verify(weights)
        except (KeyError, ValueError) as error:
            known = ", ".join(["DEFAULT", *(w.name for w in enum)])
            raise ParamError(
                "weights", f"{self.name} has no weights {weights!r}; known: {known}"
            ) from error
        classes = len(resolved.meta["categories"])
        if classes != num_classes:
            raise ParamError(
                "weights",
                f"{self.name} weights {weights!r} predict {classes} classes; the dataset has "
                f"{num_classes} (use weights: null to train from scratch)",
            )


def torchvision_archs() -> list[str]:
    """The classification models torchvision lists (detection, video etc. excluded)."""
    import torchvision

    return list(torchvision.models.list_models(torchvision.models))


def torchvision_models() -> list[TorchvisionModel]:
    """One plugin per classification model torchvision lists (imports torchvision)."""
    return [TorchvisionModel(arch) for arch in torchvision_archs()]


def torchvision_family() -> Family:
    """Every `torchvision:NAME` model, listed and built only when a suite asks for one."""
    return Family(PREFIX, torchvision_archs, TorchvisionModel)
