"""The session's training state: the model and its optimizer, the step, snapshots and restores.

The same state is what the trunk tracker and the checkpoint replay capture and apply
(`pcnbench.state.Trainer`): `_capture`, `_apply` and `_announce` are the session's side of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pcnbench.optim import build_optimizer
from pcnbench.state import TrainingState, rng_state, set_rng_state
from pcnbench.trunk import TrunkPoint

if TYPE_CHECKING:
    from pcnbench.recipe import Recipe
    from pcnbench.records import EpochRecord
    from pcnbench.session.speed import Compiler
    from pcnbench.state import EpochTally
    from pcnbench.trunk import TrunkTracker

__all__ = ["Snapshot", "TrainingStates"]


@dataclass(frozen=True)
class Snapshot:
    """Everything `Session.restore` needs to continue training exactly as from this point."""

    model: nn.Module  # a private copy: restore copies it again, so it can be restored often
    state: TrainingState  # its `model` is `model`'s state_dict; it keeps no epoch tally
    trunk: TrunkPoint | None = None  # set when taken on the dense trunk

    @property
    def step(self) -> int:
        """The optimizer step the snapshot was taken at."""
        return self.state.step

    @property
    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state_dict at the snapshot."""
        return self.state.optimizer

    @property
    def rng(self) -> dict[str, Any]:
        """The RNG states at the snapshot."""
        return self.state.rng


class TrainingStates:
    """The session's part that holds and moves its training state (a mixin of `Session`)."""

    recipe: Recipe
    device: torch.device
    steps_per_epoch: int
    total_steps: int
    on_epoch_end: Callable[[EpochRecord], None] | None
    on_progress: Callable[[int, int], None] | None
    _model: nn.Module
    _optimizer: torch.optim.Optimizer
    _compiler: Compiler
    _lr: float | None  # the rate the optimizer's groups have; None: set it at the next step
    _epoch_tally: EpochTally | None
    _step: int
    _trunk: TrunkTracker

    @property
    def step(self) -> int:
        """Optimizer steps done on the current schedule position."""
        return self._step

    @property
    def epoch(self) -> float:
        """Current schedule position in (fractional) epochs."""
        return self._step / self.steps_per_epoch

    @property
    def model(self) -> nn.Module:
        """The network being trained; assigning one builds a fresh optimizer for it."""
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:
        self._trunk.leave()  # a replaced model leaves the trunk (restore may bring it back)
        model = model.to(self.device)
        if self.recipe.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model
        self._compiler.forget()  # recipe.compile: compiled again for the new model when it trains
        self._optimizer = build_optimizer(self._model, self.recipe)
        self._lr = None  # forces the next step to set the schedule's rate

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of the current model (rebuilt whenever the model is replaced)."""
        return self._optimizer

    @property
    def on_trunk(self) -> bool:
        """Whether the session is still on the shared dense trunk (always False without a cache)."""
        return self._trunk.intact(self)

    def snapshot(self) -> Snapshot:
        """A deep copy of model, optimizer state, step and RNG states to `restore` later."""
        on_trunk = self.on_trunk
        model = copy.deepcopy(self._model)
        state = TrainingState(
            step=self._step,
            model=model.state_dict(),
            optimizer=copy.deepcopy(self._optimizer.state_dict()),
            rng=rng_state(self.device),
        )
        return Snapshot(model, state, trunk=self._trunk.point if on_trunk else None)

    def restore(self, snapshot: Snapshot) -> None:
        """Go back to `snapshot` (reusable); `steps_trained` keeps counting the work done.

        The epoch tally is not rewound: an epoch the snapshot is inside of is recorded over
        the batches trained after the restore.
        """
        # Copies again so one snapshot can be restored many times (IMP rewinds every level).
        self.model = copy.deepcopy(snapshot.model)
        self._optimizer.load_state_dict(copy.deepcopy(snapshot.state.optimizer))
        self._step = snapshot.state.step
        set_rng_state(snapshot.state.rng, self.device)
        # back on the trunk (IMP rewinds to its step-k state): the restored model is it
        self._trunk.rejoin(self, snapshot.trunk)

    # The session's side of the trunk tracker and the checkpoint replay: capture and apply
    # training states, and report what an applied one brought.

    def _capture(self) -> TrainingState:
        """The current training state (the live tensors, not copies)."""
        return TrainingState(
            step=self._step,
            model=self._model.state_dict(),
            optimizer=self._optimizer.state_dict(),
            rng=rng_state(self.device),
            tally=self._epoch_tally,
        )

    def _apply(self, state: TrainingState) -> None:
        """Continue from `state` (a trunk state or a checkpoint) with the current model."""
        self._model.load_state_dict(state.model)
        self._optimizer.load_state_dict(state.optimizer)
        self._lr = None
        self._step = state.step
        set_rng_state(state.rng, self.device)
        self._epoch_tally = state.tally

    def _announce(self, records: Sequence[EpochRecord]) -> None:
        """Report epochs and progress that a restored state brought, as if trained here."""
        if self.on_epoch_end is not None:
            for record in records:
                self.on_epoch_end(record)
        if self.on_progress is not None:
            self.on_progress(self._step, self.total_steps)
