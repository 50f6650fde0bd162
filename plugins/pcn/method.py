"""The `pcn` method a suite runs: its parameters, its checks, and train → transform → train."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from pcnbench.api import Coverage, EpochPlan, Method, ParamError, Params, Recipe

from .keep import parse_keep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn

    from pcnbench.api import ReportData, ReportFigure, Session

__all__ = ["PCN", "PCNParams"]


class PCNParams(Params):
    """Parameters of `pcn`: when to transform, how many components to keep, where."""

    at_epoch: int = Field(5, ge=0, description="epochs of dense training before the transform")
    keep: str = Field("f0.25", description="default keep rule: d64, f0.25, v0.999 or t1e-3")
    layers: dict[str, str | None] = Field(
        default_factory=dict,
        description="fnmatch pattern of layer names → keep rule, or null to leave them alone",
    )
    calibration: int = Field(5000, ge=2, description="training samples the PCA sees")
    prune_outputs: bool = Field(False, description="also remove the preceding layer's outputs")
    grow: bool = Field(
        False,
        description="transform layers even where the transform holds more parameters "
        "(the paper's uniform rule)",
    )

    @field_validator("keep")
    @classmethod
    def _valid_keep(cls, keep: str) -> str:
        parse_keep(keep)
        return keep

    @field_validator("layers")
    @classmethod
    def _valid_layers(cls, layers: dict[str, str | None]) -> dict[str, str | None]:
        for pattern, rule in layers.items():
            if rule is not None:
                try:
                    parse_keep(rule)
                except ValueError as error:
                    raise ValueError(f"layers[{pattern!r}]: {error}") from None
        return layers


class PCN(Method):
    """Principal Component Networks: dense training, PCA transform at `at_epoch`, training on."""

    name = "pcn"
    Params = PCNParams

    def check(self, params: PCNParams, recipe: Recipe) -> None:
        """The transform must happen within the recipe."""
        if params.at_epoch > recipe.epochs:
            raise ParamError("at_epoch", f"must be ≤ recipe.epochs (got {params.at_epoch})")

    def plan_epochs(
        self, params: PCNParams, recipe: Recipe, steps_per_epoch: int | None = None
    ) -> EpochPlan:
        """Dense up to `at_epoch`, then the transformed network to the recipe's end."""
        at, total = params.at_epoch, recipe.epochs
        default = "" if "at_epoch" in params.model_fields_set else " default"
        why = f"{total} = {at} dense + {total - at} transformed (pcn.at_epoch{default} {at})"
        return EpochPlan(trunk=(at,), own=total - at, why=why)

    def check_model(self, params: PCNParams, model: nn.Module) -> None:
        """Every `layers` pattern must match a conv or linear layer of the model."""
        from pcnbench.api import select_layers  # torch: the model is built by then

        select_layers(model, params.layers, key="layers")

    def plan_coverage(
        self, params: PCNParams, model: nn.Module, input_shape: tuple[int, ...]
    ) -> Coverage | None:
        """The layers PCN will transform and those it leaves dense, from one meta forward pass.

        Layers whose k the spectrum decides (v and t rules) count as transformed.
        """
        from .plan import plan  # torch: the model is built by then

        return plan(
            model,
            input_shape,
            params.keep,
            params.layers,
            grow=params.grow,
            prune_outputs=params.prune_outputs,
        )

    def run(self, session: Session, params: PCNParams) -> None:
        """Train to `at_epoch`, transform, train to the end, record."""
        from .plan import account  # torch: imported when it runs
        from .transform import pcn_transform

        session.train(until=params.at_epoch)
        before = session.evaluate()["accuracy"]
        dense = session.model
        coverage = Coverage(dense, self.name)
        with session.phase("pcn_transform", kind="transform"):
            new, report = pcn_transform(
                dense,
                session.calibration_batches(params.calibration),
                keep=params.keep,
                layers=params.layers,
                prune_outputs=params.prune_outputs,
                grow=params.grow,
            )
            session.model = new
        pruned = [layer.pruned for layer in report.layers.values() if layer.pruned]
        account(coverage, dense, report.layers, report.skipped, pruned)
        del dense  # the dense network is not needed past here
        after = session.evaluate()["accuracy"]
        session.train(until="end")
        session.record(
            transform_epoch=params.at_epoch,
            acc_before_transform=before,
            acc_after_transform=after,
            pcn_layers=report.layer_rows(),
            pcn_skipped=report.skipped_rows(),
            **coverage.columns(),
        )

    def figures(self, data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
        """PCN's own report figures: the layers' input spectra, one per (dataset, model)."""
        from pcnbench_plugins.pcn.figures import pcn_figures  # matplotlib: only when reporting

        return pcn_figures(data, colors)
