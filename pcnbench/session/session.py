"""`Session`: one cell's training session, assembled from its parts (see `pcnbench.session`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pcnbench.checkpoint import CellCheckpoint, Replay
from pcnbench.contracts import FolderSplits, Meter, TensorSplits
from pcnbench.counting import count_macs, count_params
from pcnbench.data import make_source
from pcnbench.errors import HaltError, PcnbenchError
from pcnbench.metering import MeterSet
from pcnbench.phases import PhaseClock
from pcnbench.recipe import Recipe, check_speed_settings
from pcnbench.records import EpochRecord
from pcnbench.session.clock import PhaseMetering
from pcnbench.session.loop import TrainingLoop
from pcnbench.session.recording import ResultRecording
from pcnbench.session.speed import Compiler, set_tf32
from pcnbench.session.states import TrainingStates
from pcnbench.state import EpochTally
from pcnbench.trunk import TrunkCache, TrunkTracker

__all__ = ["Session"]


class Session(TrainingLoop, TrainingStates, PhaseMetering, ResultRecording):
    """Trains one cell's model with the recipe; the object a `Method.run` drives.

    The schedule and the data order are functions of the optimizer step, so training in
    pieces, replacing the model, or restoring a snapshot all continue exactly where they are.

    With a `trunk` cache, plain `train()` calls on the untouched model it was given (no
    replacement, masks, fine-tuning, edits or RNG draws in between) restore cached dense
    states instead of training them, and cache the states they reach.
    """

    def __init__(
        self,
        model: nn.Module,
        data: TensorSplits | FolderSplits,
        recipe: Recipe,
        seed: int,
        device: torch.device | str = "cpu",
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        meters: Sequence[Meter] | MeterSet = (),
        measure_inference: bool = True,
        trunk: TrunkCache | None = None,
        checkpoint: CellCheckpoint | None = None,
    ) -> None:
        self.recipe = recipe
        self.measure_inference = measure_inference
        self.seed = seed
        self.device = torch.device(device)
        try:
            check_speed_settings(recipe, self.device)
        except PcnbenchError as exc:  # every cell shares the recipe: the run stops, not the cell
            raise HaltError(f"{exc} (the suite's recipe cannot run here)") from None
        set_tf32(recipe, self.device)
        self._compiler = Compiler(recipe.compile)
        self.on_epoch_end = on_epoch_end
        self.on_progress = on_progress
        self._source = make_source(data, recipe, seed, self.device)
        self.input_shape: tuple[int, ...] = self._source.input_shape
        self.steps_per_epoch: int = self._source.num_batches()
        self.total_steps: int = recipe.epochs * self.steps_per_epoch
        self.recipe_steps: int = self.total_steps  # the recipe's end; fine-tuning goes beyond
        self._finetune_lr: Callable[[int], float] | None = None
        self.records: list[EpochRecord] = []
        self.results: list[dict[str, Any]] = []
        self._step_hooks: list[Callable[[], None]] = []
        self._epoch_tally: EpochTally | None = None
        self._step = 0
        self._steps_trained = 0
        meters = meters if isinstance(meters, MeterSet) else MeterSet(meters)
        self._clock = PhaseClock(meters, self.device, lambda: self._steps_trained)
        self._trunk = TrunkTracker(trunk)
        # Checkpoints: train() calls are numbered; a resumed cell loads their stored states.
        self._replay = Replay(checkpoint)
        self._op = 0
        self.model = model
        self.dense_params: int = count_params(self._model)
        self.dense_macs: int = count_macs(self._model, self.input_shape)
        # The dense parent as the session got it, to time every result against (interleaved,
        # see pcnbench.inference): an architecture copy, so one more model in memory while the
        # session lives, and only when measuring. Its weights are the initial ones: weight
        # values do not change what dense kernels do.
        self._dense_model: nn.Module | None = None
        if measure_inference:
            self._dense_model = copy.deepcopy(self._model).eval().requires_grad_(False)
        self._trunk.start(self)
