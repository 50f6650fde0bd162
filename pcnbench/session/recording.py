"""The session's results: `record` evaluates and counts the current model into a result row."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from pcnbench.counting import check_countable, count_macs, count_params
from pcnbench.inference import measure_inference
from pcnbench.masks import mask_density
from pcnbench.metering import energy_columns

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pcnbench.checkpoint import Replay
    from pcnbench.data import BatchSource
    from pcnbench.recipe import Recipe
    from pcnbench.trunk import TrunkTracker

__all__ = ["ResultRecording"]

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ResultRecording:
    """The session's part that records results (a mixin of `pcnbench.session.Session`).

    Of the other parts it uses `evaluate` (the loop), the phases and their times (the clock)
    and `epochs_trained` (the states).
    """

    recipe: Recipe
    device: torch.device
    input_shape: tuple[int, ...]
    steps_per_epoch: int
    dense_params: int
    dense_macs: int
    measure_inference: bool
    results: list[dict[str, Any]]
    _source: BatchSource
    _model: nn.Module
    _dense_model: nn.Module | None  # the dense parent, to time every result against
    _step: int
    _trunk: TrunkTracker
    _replay: Replay

    def record(self, **extra: Any) -> dict[str, Any]:
        """Evaluate and count the current model, append the result row and return it.

        `density` is the fraction of masked weights kept when the model has masks (see
        `pcnbench.masks`): a share of the masked tensors only, else params / dense_params;
        `model_density` is always params / dense_params, the whole model's share;
        `compression` is dense_params / params and
        `speedup` dense_macs / macs (theoretical). Keys in `extra` add or override columns.
        A model holding nan/inf, or a nonzero weight where its mask removed one, is refused
        (PcnbenchError): its counts would not describe the network that was evaluated.
        """
        bad = [key for key in extra if not _COLUMN.match(key)]
        if bad:
            raise ValueError(
                f"record({bad[0]}=...): a result column name must be letters, digits and _,"
                " not starting with a digit (e.g. top5_accuracy)"
            )
        check_countable(self._model)
        test = self.evaluate("test")
        val = self.evaluate("val") if "val" in self._source.splits else None
        params = count_params(self._model)
        macs = count_macs(self._model, self.input_shape)
        masked = mask_density(self._model)
        row: dict[str, Any] = {
            "accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "val_accuracy": val["accuracy"] if val else None,
            "params": params,
            "dense_params": self.dense_params,
            "macs": macs,
            "dense_macs": self.dense_macs,
            "density": masked if masked is not None else params / self.dense_params,
            "model_density": params / self.dense_params if self.dense_params else None,
            "compression": self.dense_params / params if params else None,
            "speedup": self.dense_macs / macs if macs else None,
            "train_time_s": self.train_time_s,
            "incurred_time_s": self.incurred_time_s,
            "trunk_reused_epochs": self._trunk.reused_steps / self.steps_per_epoch,
            "transform_time_s": self._wall_s("transform"),
            "eval_time_s": self._wall_s("eval"),
            "epochs_trained": self.epochs_trained,
            "step": self._step,
            "resumed": self._replay.resumed,
        }
        row.update(energy_columns(self.phases))
        if self.measure_inference and self._dense_model is not None:
            # timed outside the metered phases (it is not work the method did), interleaved
            # with the dense parent: the ratio holds where absolute figures are at the mercy
            # of the machine's load
            row.update(
                measure_inference(
                    self._model,
                    self.input_shape,
                    self.recipe.batch_size,
                    self.device,
                    dense=self._dense_model,
                )
            )
        else:
            row.update(
                latency_ms=math.nan,
                dense_latency_ms=math.nan,
                latency_ratio=math.nan,
                throughput_sps=math.nan,
                inference_method="not measured: metering disabled",
            )
        row.update(extra)
        self.results.append(row)
        return row
