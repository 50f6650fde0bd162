"""The training session a method drives: optimizer, schedule, data order, phases and results."""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pcnbench.checkpoint import CellCheckpoint, Replay
from pcnbench.contracts import FolderSplits, Meter, TensorSplits
from pcnbench.counting import check_countable, count_macs, count_params
from pcnbench.data import make_source
from pcnbench.errors import DivergedError, HaltError, PcnbenchError
from pcnbench.inference import measure_inference
from pcnbench.masks import mask_density
from pcnbench.metering import MeterSet, energy_columns
from pcnbench.optim import build_optimizer
from pcnbench.phases import PhaseClock
from pcnbench.recipe import Recipe, check_speed_settings
from pcnbench.records import EpochRecord, PhaseRecord
from pcnbench.schedule import lr_at
from pcnbench.state import EpochTally, TrainingState, rng_state, set_rng_state
from pcnbench.steps import parse_steps
from pcnbench.trunk import TrunkCache, TrunkPoint, TrunkTracker

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = ["Session", "Snapshot"]


def _first_nonfinite(losses: torch.Tensor, first: int, before: torch.Tensor | None) -> torch.Tensor:
    """(batch, 1 if inf else 0) of the first non-finite loss of an epoch, on the device.

    `losses` are those of batches `first`, `first` + 1, ... of the epoch; `before` is what the
    epoch's earlier pieces found, and wins when it names a batch. (-1, -1) when every loss is
    finite. Computed without reading anything back, so the GPU is never waited for.
    """
    bad = ~torch.isfinite(losses)
    index = bad.int().argmax()  # the first bad one; 0 when none is
    inf = losses.index_select(0, index.reshape(1)).squeeze(0).isinf().to(index.dtype)
    found = torch.stack((first + index, inf))
    found = torch.where(bad.any(), found, torch.full_like(found, -1))
    return found if before is None else torch.where(before[0] >= 0, before, found)


def _hook_keys(model: nn.Module) -> tuple[int, ...]:
    """The handles of every module hook of `model`: compiled code does not see later changes."""
    return tuple(
        key
        for module in model.modules()
        for hooks in (
            module._forward_pre_hooks,
            module._forward_hooks,
            module._backward_pre_hooks,
            module._backward_hooks,
        )
        for key in hooks
    )


def _divergence(tally: EpochTally, steps_per_epoch: int) -> str:
    """The message for an epoch whose loss sum is not finite."""
    batch, inf = tally.nonfinite.tolist() if tally.nonfinite is not None else (-1, 0)
    if batch < 0:  # every loss was finite; their sum overflowed
        return f"diverged: the epoch's summed loss overflowed at epoch {tally.epoch + 1}"
    step = tally.epoch * steps_per_epoch + batch + 1  # optimizer steps count from 1
    kind = "inf" if inf else "nan"
    return f"diverged: loss is {kind} at epoch {tally.epoch + 1}, step {step}"


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


class Session:
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
        self._set_tf32()
        # recipe.compile: the compiled model of the current one, built at its first training
        # step; with the hook handles it was built under (a change means compiling again)
        self._compiled: nn.Module | None = None
        self._compiled_hooks: tuple[int, ...] = ()
        self._compiled_before = False
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

    @property
    def step(self) -> int:
        """Optimizer steps done on the current schedule position."""
        return self._step

    @property
    def epoch(self) -> float:
        """Current schedule position in (fractional) epochs."""
        return self._step / self.steps_per_epoch

    @property
    def steps_trained(self) -> int:
        """All optimizer steps this session has taken, restores included (never decreases)."""
        return self._steps_trained

    @property
    def epochs_trained(self) -> float:
        """`steps_trained` in epochs: the training a method is charged for."""
        return self._steps_trained / self.steps_per_epoch

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
        self._compiled = None  # recipe.compile: compiled again for the new model when it trains
        self._optimizer = build_optimizer(self._model, self.recipe)
        self._lr: float | None = None  # forces the next step to set the schedule's rate

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

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of the current model (rebuilt whenever the model is replaced)."""
        return self._optimizer

    @property
    def train_time_s(self) -> float:
        """Wall seconds of all recorded phases of kind "train" (evaluation excluded).

        Trunk segments restored from the cache count with the time they took to train, so this
        is the cell's training time as if it had run alone; see `incurred_time_s`.
        """
        return sum(p.wall_s for p in self.phases if p.kind == "train")

    @property
    def incurred_time_s(self) -> float:
        """Wall seconds this session actually spent training (reused trunk segments excluded)."""
        return sum(p.wall_s for p in self.phases if p.kind == "train" and not p.reused)

    @property
    def on_trunk(self) -> bool:
        """Whether the session is still on the shared dense trunk (always False without a cache)."""
        return self._trunk.intact(self)

    @property
    def phases(self) -> list[PhaseRecord]:
        """The recorded phases, in the order they ended."""
        return self._clock.records

    def phase(self, name: str, kind: str = "other") -> AbstractContextManager[None]:
        """Meter a named stretch of work.

        A phase inside another is part of the outer one, except evaluation: an "eval" phase
        nested in, say, training is recorded on its own and its time is taken out of the outer
        phase, so `train_time_s` counts training alone.
        """
        return self._clock.phase(name, kind)

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
        self._set_tf32()
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

    def _set_tf32(self) -> None:
        """recipe.precision's TF32 switches on a CUDA device (set per session: they are global).

        fp32 and bf16 keep PyTorch's defaults (TF32 for cuDNN convolutions, not for matmuls);
        tf32 allows it for both. Nothing changes on other devices.
        """
        if self.device.type == "cuda":
            tf32 = self.recipe.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = True

    def _training_model(self) -> nn.Module:
        """What training steps call: the model, or with recipe.compile its compiled form.

        Compiled afresh for each model (assigning `model` drops it) and when the model's hooks
        changed since (compiled code would not run them). Evaluation, calibration, counting
        and checkpoints use the model itself: its hooks fire, its state_dict is the model's.
        """
        mode = self.recipe.compile
        if mode is False:
            return self._model
        hooks = _hook_keys(self._model)
        if self._compiled is None or hooks != self._compiled_hooks:
            if not self._compiled_before or self._compiled is not None:
                # A fresh cache per session (the limit on recompilations is per code object,
                # e.g. Sequential.forward across cells), and after a hook change: compiled
                # code is not guarded on hooks, so it would skip the new ones.
                torch._dynamo.reset()
            self._compiled = torch.compile(
                self._model, mode=None if mode == "default" else mode, dynamic=False
            )
            self._compiled_hooks = hooks
            self._compiled_before = True
        return self._compiled

    def _train_epoch(self, phase: str, epoch: int, first: int, last: int) -> None:
        """Train batches `first:last` of `epoch`; record the epoch if that completes it."""
        started = time.perf_counter()
        model, optimizer, recipe = self._model, self._optimizer, self.recipe
        # Speed settings (recipe.precision, channels_last, compile): a compiled model runs the
        # full batches (static shapes: one graph), the model itself a ragged last batch.
        fast = self._training_model()
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
        # An epoch may be trained in pieces (train(until="Nit") calls): its record covers all
        # of them, as long as they are contiguous (a restore elsewhere starts a new tally).
        tally = self._epoch_tally
        if tally is None or tally.epoch != epoch or tally.next_batch != first:
            tally = EpochTally(epoch, first, torch.zeros((), device=self.device), 0, 0.0)
        if losses:
            stacked = torch.stack(losses)
            tally = EpochTally(
                epoch,
                last,
                tally.loss_sum + stacked.sum(),
                tally.batches + (last - first),
                tally.seconds + time.perf_counter() - started,
                _first_nonfinite(stacked, first, tally.nonfinite),
            )
        self._epoch_tally = tally
        if last < steps_per_epoch:
            return
        self._epoch_tally = None
        loss_sum = tally.loss_sum.item()
        if not math.isfinite(loss_sum):
            raise DivergedError(_divergence(tally, steps_per_epoch))
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
            self._set_tf32()
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

    def calibration_batches(
        self, n: int = 5000, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Inputs (no labels) of n unaugmented, normalized training samples in a seeded order.

        The order depends on the cell seed only; fewer than n come back if the set is smaller.
        """
        return self._source.calibration_batches(n, batch_size)

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
            "transform_time_s": sum(p.wall_s for p in self.phases if p.kind == "transform"),
            "eval_time_s": sum(p.wall_s for p in self.phases if p.kind == "eval"),
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
