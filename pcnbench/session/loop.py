"""The session's training: `train`, `finetune`, the epoch loop, and evaluation on a split.

The schedule and the data order are functions of the optimizer step, so training in pieces,
replacing the model, or restoring a snapshot all continue exactly where they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pcnbench.errors import DivergedError
from pcnbench.records import EpochRecord
from pcnbench.schedule import lr_at
from pcnbench.session.epochs import divergence, tally_piece
from pcnbench.session.speed import set_tf32
from pcnbench.steps import parse_steps

if TYPE_CHECKING:
    from torch import nn

    from pcnbench.checkpoint import Replay
    from pcnbench.data import BatchSource
    from pcnbench.phases import PhaseClock
    from pcnbench.recipe import Recipe
    from pcnbench.session.speed import Compiler
    from pcnbench.state import EpochTally
    from pcnbench.trunk import TrunkTracker

__all__ = ["TrainingLoop"]


class TrainingLoop:
    """The session's part that trains and evaluates (a mixin of `pcnbench.session.Session`).

    It moves the schedule position (`_step`) and counts the work (`_steps_trained`); the
    trunk tracker and the checkpoint replay may stand in for a `train()` call's training. Of
    the other parts it uses `epoch` (states) and `phase` (clock).
    """

    recipe: Recipe
    device: torch.device
    steps_per_epoch: int
    total_steps: int
    recipe_steps: int
    records: list[EpochRecord]
    on_epoch_end: Callable[[EpochRecord], None] | None
    on_progress: Callable[[int, int], None] | None
    _source: BatchSource
    _model: nn.Module
    _optimizer: torch.optim.Optimizer
    _compiler: Compiler
    _lr: float | None
    _finetune_lr: Callable[[int], float] | None
    _step_hooks: list[Callable[[], None]]
    _epoch_tally: EpochTally | None
    _step: int
    _steps_trained: int
    _op: int
    _clock: PhaseClock
    _trunk: TrunkTracker
    _replay: Replay

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step `step`: the recipe's schedule, then any fine-tuning."""
        if step < self.recipe_steps or self._finetune_lr is None:
            return lr_at(step, self.steps_per_epoch, self.recipe)
        return self._finetune_lr(step)

    def finetune(self, epochs: int, lr: float | str = "rewind", phase: str = "finetune") -> None:
        """Train `epochs` more epochs after the recipe's end (e.g. after one-shot pruning).

        `lr` is a fixed learning rate, or "rewind" to replay the schedule's last `epochs` epochs
        (learning-rate rewinding, Renda et al. 2020). The data order continues epoch by epoch.
        """
        if epochs < 1:
            raise ValueError(f"finetune(epochs={epochs}): must be ≥ 1")
        if self._step != self.total_steps:
            raise ValueError(
                f"finetune() starts at the end of training (step {self.total_steps}); "
                f"the session is at step {self._step}"
            )
        shift = epochs * self.steps_per_epoch
        if lr == "rewind":
            if shift > self.recipe_steps:
                raise ValueError(
                    f"finetune(epochs={epochs}, lr='rewind') replays more epochs than the "
                    f"recipe has ({self.recipe.epochs})"
                )
            start = self.total_steps

            def replay(step: int) -> float:
                return lr_at(
                    step - start + self.recipe_steps - shift, self.steps_per_epoch, self.recipe
                )

            self._finetune_lr = replay
        elif isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
            fixed = float(lr)
            self._finetune_lr = lambda step: fixed
        else:
            raise ValueError(f"finetune(lr={lr!r}): expected a positive number or 'rewind'")
        self._lr = None
        self.total_steps += shift  # beyond the recipe: off the trunk
        self.train(until="end", phase=phase)

    def add_step_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook()` after every optimizer step (e.g. to re-apply pruning masks).

        When a hook runs, `session.step` already counts the step just taken.

        Hooks belong to the session, so they survive replacing the model and restoring snapshots.
        """
        self._step_hooks.append(hook)

    def _until_step(self, until: int | str) -> int:
        if until == "end":
            target = self.total_steps
        else:
            try:
                target = parse_steps(str(until)).to_step(self.steps_per_epoch)
            except ValueError:
                raise ValueError(
                    f"train(until={until!r}): expected an epoch count (5 or '5ep'), "
                    "iterations ('500it') or 'end'"
                ) from None
        if target < self._step:
            raise ValueError(
                f"train(until={until!r}) is step {target}"
                f" (epoch {target / self.steps_per_epoch:g}),"
                f" before the current step {self._step} (epoch {self.epoch:g});"
                " restore a snapshot to go back"
            )
        if target > self.total_steps:
            raise ValueError(
                f"train(until={until!r}) is step {target}, beyond the recipe's end at step "
                f"{self.total_steps} ({self.recipe.epochs} epochs of {self.steps_per_epoch} steps)"
            )
        return target

    def train(self, until: int | str = "end", phase: str = "train") -> None:
        """Train from the current step to `until`: epochs (5, '5ep'), steps ('500it') or 'end'.

        On the dense trunk, a cached state up to `until` is restored instead of trained.
        """
        stop = self._until_step(until)
        set_tf32(self.recipe, self.device)
        op, self._op = self._op, self._op + 1
        if self._replay.replay(self, op, stop):
            return  # a resumed cell: this call ended in the interrupted run
        trunk = self._trunk.enter(self, plain=phase == "train" and not self._clock.open)
        if trunk and self._trunk.resume(self, stop) and self._step == stop:
            self._trunk.end_segment(self, stop, ())
            self._replay.save(self, op, stop, end=True)
            return
        start, records = self._step, len(self.records)
        with self.phase(phase, kind="train"):
            self._replay.resume(self, op, stop)
            while self._step < stop:
                epoch, first = divmod(self._step, self.steps_per_epoch)
                last = min(stop - epoch * self.steps_per_epoch, self.steps_per_epoch)
                self._train_epoch(phase, epoch, first, last)
                if last == self.steps_per_epoch and self._step < stop:
                    self._replay.save(self, op, stop, end=False)
        if trunk:
            self._trunk.end_segment(self, start, self.records[records:])
        self._replay.save(self, op, stop, end=True)

    def _train_epoch(self, phase: str, epoch: int, first: int, last: int) -> None:
        """Train batches `first:last` of `epoch`; record the epoch if that completes it."""
        started = time.perf_counter()
        model, optimizer, recipe = self._model, self._optimizer, self.recipe
        # Speed settings (recipe.precision, channels_last, compile): a compiled model runs the
        # full batches (static shapes: one graph), the model itself a ragged last batch.
        fast = self._compiler.compiled(model)
        full = recipe.batch_size
        bf16 = recipe.precision == "bf16"
        device_type = self.device.type
        channels_last = torch.channels_last if recipe.channels_last else None
        mark_step = (
            torch.compiler.cudagraph_mark_step_begin
            if recipe.compile == "reduce-overhead"
            else None
        )
        steps_per_epoch, total = self.steps_per_epoch, self.total_steps
        step = self._step
        on_progress = self.on_progress
        step_hooks = self._step_hooks
        every = max(1, total // 100)
        # Without a listener the progress check never fires: one int compare per step.
        next_report = (step // every + 1) * every if on_progress is not None else -1
        losses: list[torch.Tensor] = []
        model.train()
        for x, y in self._source.batches(epoch, first, last):
            lr = self.lr_at(step)
            if lr != self._lr:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                self._lr = lr
            if channels_last is not None and x.dim() == 4:
                x = x.contiguous(memory_format=channels_last)  # no copy when it already is
            net = fast if len(x) == full else model
            if mark_step is not None:
                mark_step()
            if bf16:
                with torch.autocast(device_type, dtype=torch.bfloat16):
                    loss = F.cross_entropy(net(x), y)
            else:
                loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Kept on the device: reading it here would wait for the GPU every step.
            losses.append(loss.detach())
            step += 1
            self._step = step
            self._steps_trained += 1
            if step_hooks:
                for hook in step_hooks:
                    hook()
            if step == next_report and on_progress is not None:
                on_progress(step, total)
                next_report += every
        tally = tally_piece(self._epoch_tally, epoch, first, last, losses, started, self.device)
        self._epoch_tally = tally
        if last < steps_per_epoch:
            return
        self._epoch_tally = None
        loss_sum = tally.loss_sum.item()
        if not math.isfinite(loss_sum):
            raise DivergedError(divergence(tally, steps_per_epoch))
        train_loss = loss_sum / tally.batches
        seconds = tally.seconds
        if on_progress is not None and step % every:
            on_progress(step, total)
        done = epoch + 1
        evaluate = (recipe.eval_every > 0 and done % recipe.eval_every == 0) or (
            step == self.total_steps
        )
        test = self.evaluate("test") if evaluate else None
        val = self.evaluate("val") if evaluate and "val" in self._source.splits else None
        record = EpochRecord(
            phase=phase,
            epoch=done,
            step=step,
            train_loss=train_loss,
            test_accuracy=test["accuracy"] if test else None,
            test_loss=test["loss"] if test else None,
            val_accuracy=val["accuracy"] if val else None,
            lr=self._lr if self._lr is not None else self.lr_at(step - 1),
            seconds=seconds,
        )
        self.records.append(record)
        if self.on_epoch_end is not None:
            self.on_epoch_end(record)

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Top-1 accuracy (0–1) and mean cross-entropy of the current model on a split."""
        if split not in self._source.splits:
            raise ValueError(
                f"no {split!r} split to evaluate on (have {', '.join(self._source.splits)})"
            )
        with self.phase("eval", kind="eval"):
            modes = [(module, module.training) for module in self._model.modules()]
            self._model.eval()
            set_tf32(self.recipe, self.device)
            channels_last = torch.channels_last if self.recipe.channels_last else None
            # Summed on the device and read once at the end: no wait for the GPU per batch.
            correct = torch.zeros((), dtype=torch.int64, device=self.device)
            loss = torch.zeros((), device=self.device)
            n = 0
            try:
                with torch.no_grad():
                    for x, y in self._source.eval_batches(split):
                        if channels_last is not None and x.dim() == 4:
                            x = x.contiguous(memory_format=channels_last)
                        out = self._model(x)
                        loss += F.cross_entropy(out, y, reduction="sum")
                        correct += (out.argmax(1) == y).sum()
                        n += len(y)
                totals = torch.stack((correct.double(), loss.double())).tolist()
            finally:
                for module, training in modes:
                    module.training = training
        return {"accuracy": totals[0] / n, "loss": totals[1] / n}

    def calibration_batches(
        self, n: int = 5000, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Inputs (no labels) of n unaugmented, normalized training samples in a seeded order.

        The order depends on the cell seed only; fewer than n come back if the set is smaller.
        """
        return self._source.calibration_batches(n, batch_size)
