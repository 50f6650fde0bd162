"""The training session a method drives: optimizer, schedule, data order, phases and results."""

from __future__ import annotations

import copy
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pcnbench.checkpoint import CellCheckpoint
from pcnbench.contracts import FolderSplits, Meter, Reading, TensorSplits
from pcnbench.counting import count_macs, count_params
from pcnbench.data import make_source
from pcnbench.inference import measure_inference
from pcnbench.masks import mask_density, masked_parameters
from pcnbench.metering import (
    MeterSet,
    energy_columns,
    scale_estimates,
    subtract,
)
from pcnbench.recipe import Recipe
from pcnbench.records import EpochRecord, PhaseRecord
from pcnbench.schedule import lr_at
from pcnbench.trunk import Segment, TrunkCache, TrunkState, clip_segments

__all__ = ["Session", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """Everything `Session.restore` needs to continue training exactly as from this point."""

    model: nn.Module
    optimizer_state: dict[str, Any]
    step: int
    rng: dict[str, Any]
    trunk: _TrunkPoint | None = None  # set when taken on the dense trunk


@dataclass(frozen=True)
class _TrunkPoint:
    """How the session got to a trunk step: the segments it is charged for, the epochs' records."""

    segments: tuple[Segment, ...]
    records: tuple[EpochRecord, ...]


@dataclass
class _Frame:
    """Clock readings at the start of the outermost open phase (shifted on a resume)."""

    wall: float
    cpu: float
    carved: tuple[float, float]
    carved_readings: int
    start_step: int
    metered_from: float  # when the meters' window opened (never shifted)
    resumed_s: float = 0.0  # seconds credited from an interrupted run


_UNTIL = re.compile(r"^\s*(\d+)\s*(ep|it)?\s*$")


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
        self._meters = meters if isinstance(meters, MeterSet) else MeterSet(meters)
        self.measure_inference = measure_inference
        self.seed = seed
        self.device = torch.device(device)
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
        self.phases: list[PhaseRecord] = []
        self._phase_depth = 0
        self._step_hooks: list[Callable[[], None]] = []
        # (epoch, next batch, loss sum, batches, seconds) of the epoch being trained in pieces
        self._epoch_tally: tuple[int, int, torch.Tensor, int, float] | None = None
        # wall and CPU seconds, and meter readings, of evaluations nested in other phases
        self._carved = (0.0, 0.0)
        self._carved_readings: list[list[Reading]] = []
        self._step = 0
        self._steps_trained = 0
        # The dense trunk: while this session only trains the model it was given, plainly,
        # its states equal those of any cell with the same setup, which `trunk` caches.
        self._trunk = trunk
        self._on_trunk = False
        self._trunk_point = _TrunkPoint((), ())
        self._trunk_mark: tuple[nn.Module, tuple[int, ...], dict[str, Any]] | None = None
        self._reused_steps = 0
        # Checkpoints: train() calls are numbered; a resumed cell loads their stored states.
        self._checkpoint = checkpoint
        self._op = 0
        self._outer: _Frame | None = None
        self.model = model
        self.dense_params: int = count_params(self._model)
        self.dense_macs: int = count_macs(self._model, self.input_shape)
        if trunk is not None:
            self._on_trunk = True
            self._mark_trunk()

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
        self._on_trunk = False  # a replaced model leaves the trunk (restore may bring it back)
        self._model = model.to(self.device)
        self._optimizer = self._build_optimizer(self._model)
        self._lr: float | None = None  # forces the next step to set the schedule's rate

    def _build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        o, wd = self.recipe.optimizer, self.recipe.weight_decay
        params = [p for p in model.parameters() if p.requires_grad]
        if o.name == "sgd":
            return torch.optim.SGD(
                params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=wd
            )
        optimizer = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return optimizer(params, lr=o.lr, betas=o.betas, weight_decay=wd)

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
        self._on_trunk = False
        self.total_steps += shift
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
        return self._trunk is not None and self._trunk_intact()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str, kind: str = "other") -> Iterator[None]:
        """Meter a named stretch of work.

        A phase inside another is part of the outer one, except evaluation: an "eval" phase
        nested in, say, training is recorded on its own and its time is taken out of the outer
        phase, so `train_time_s` counts training alone.
        """
        self._phase_depth += 1
        nested = self._phase_depth > 1
        if nested and kind != "eval":
            try:
                yield
            finally:
                self._phase_depth -= 1
            return
        self._sync()
        handles = self._meters.start(nested=nested, kind=kind) if self._meters else []
        now = time.perf_counter()
        frame = _Frame(
            now,
            time.process_time(),
            self._carved,
            len(self._carved_readings),
            self._steps_trained,
            metered_from=now,
        )
        if not nested:
            self._outer = frame
        try:
            yield
        finally:
            self._phase_depth -= 1
            self._sync()
            now = time.perf_counter()
            wall_s = now - frame.wall
            cpu_s = time.process_time() - frame.cpu
            metered_s = now - frame.metered_from  # the meters' window (a resume shifts `wall`)
            readings = self._meters.stop(handles, metered_s) if self._meters else []
            if nested:
                self._carved = (self._carved[0] + wall_s, self._carved[1] + cpu_s)
                self._carved_readings.append(readings)
            else:
                self._outer = None
                carved_wall = self._carved[0] - frame.carved[0]
                wall_s -= carved_wall
                cpu_s -= self._carved[1] - frame.carved[1]
                carved_readings = frame.carved_readings
                for inner in self._carved_readings[carved_readings:]:
                    readings = subtract(readings, inner)
                if self._carved_readings[carved_readings:] and metered_s > 0:
                    readings = scale_estimates(readings, max(0.0, 1 - carved_wall / metered_s))
                del self._carved_readings[carved_readings:]
            self.phases.append(
                PhaseRecord(
                    name=name,
                    kind=kind,
                    wall_s=wall_s,
                    cpu_s=cpu_s,
                    start_step=frame.start_step,
                    end_step=self._steps_trained,
                    readings=readings,
                    resumed_s=frame.resumed_s,
                )
            )

    def _until_step(self, until: int | str) -> int:
        if until == "end":
            target = self.total_steps
        else:
            match = _UNTIL.match(str(until)) if not isinstance(until, bool) else None
            if match is None:
                raise ValueError(
                    f"train(until={until!r}): expected an epoch count (5 or '5ep'), "
                    "iterations ('500it') or 'end'"
                )
            count = int(match.group(1))
            target = count if match.group(2) == "it" else count * self.steps_per_epoch
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
        op, self._op = self._op, self._op + 1
        checkpoint = self._checkpoint
        if checkpoint is not None and checkpoint.has_op(op) and self._load_state(op, stop):
            return  # a resumed cell: this call ended in the interrupted run
        trunk = (
            self._trunk is not None
            and phase == "train"
            and self._phase_depth == 0
            and self._trunk_intact()
        )
        self._on_trunk = trunk
        resumed = trunk and self._resume_trunk(stop)
        if resumed and self._step == stop:
            self._end_trunk_segment()
            self._save_state(op, stop, end=True)
            return
        start, records = self._step, len(self.records)
        with self.phase(phase, kind="train"):
            if checkpoint is not None and checkpoint.live_op() == op:
                self._load_state(None, stop)
            while self._step < stop:
                epoch, first = divmod(self._step, self.steps_per_epoch)
                last = min(stop - epoch * self.steps_per_epoch, self.steps_per_epoch)
                self._train_epoch(phase, epoch, first, last)
                if last == self.steps_per_epoch and self._step < stop:
                    self._save_state(op, stop, end=False)
        if trunk and self._step > start:
            p = self.phases[-1]
            point = self._trunk_point
            self._trunk_point = _TrunkPoint(
                (*point.segments, Segment(start, self._step, p.wall_s, p.cpu_s, p.readings)),
                (*point.records, *self.records[records:]),
            )
        if trunk:
            self._end_trunk_segment()
        self._save_state(op, stop, end=True)

    def _save_state(self, op: int, stop: int, *, end: bool) -> None:
        """Checkpoint the session at the end of `train()` call `op`, or inside it (if due)."""
        checkpoint = self._checkpoint
        if checkpoint is None or not checkpoint.due():
            return
        self._sync()
        outer = None
        if self._outer is not None:
            frame, now = self._outer, time.perf_counter()
            outer = (
                now - frame.wall - (self._carved[0] - frame.carved[0]),
                time.process_time() - frame.cpu - (self._carved[1] - frame.carved[1]),
                frame.start_step,
            )
        tally = self._epoch_tally
        state = {
            "op": op,
            "stop": stop,
            "step": self._step,
            "steps_trained": self._steps_trained,
            "total_steps": self.total_steps,
            "model": self._model.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "rng": self._rng_state(),
            "tally": None if tally is None else (*tally[:2], tally[2].item(), *tally[3:]),
            "records": list(self.records),
            "results": copy.deepcopy(self.results),
            "phases": list(self.phases),
            "reused_steps": self._reused_steps,
            "on_trunk": self._on_trunk,
            "trunk_point": self._trunk_point,
            "outer": outer,
        }
        if end:
            checkpoint.save_op(op, state)
        else:
            checkpoint.save_live(state)

    def _load_state(self, op: int | None, stop: int) -> bool:
        """Continue from a stored state: the end of call `op`, or (None) the live mid-call one.

        False, with the checkpoints dropped, when the state does not fit the model the method
        built this time (then the cell trains on from here as if never interrupted).
        """
        checkpoint = self._checkpoint
        assert checkpoint is not None
        state = (
            checkpoint.load_op(op, self.device)
            if op is not None
            else checkpoint.load_live(self.device)
        )
        current = self._model.state_dict()
        fits = (
            state["stop"] == stop
            and state["model"].keys() == current.keys()
            and all(state["model"][k].shape == v.shape for k, v in current.items())
            and (state["outer"] is None) == (self._outer is None)
        )
        if fits and state["step"] <= self._step and op is None:
            return False  # the trunk cache already brought this call further
        if not fits:
            checkpoint.clear()
            self._checkpoint = None
            return False
        self._model.load_state_dict(state["model"])
        self._optimizer.load_state_dict(state["optimizer"])
        self._lr = None
        self._step = state["step"]
        self._steps_trained = state["steps_trained"]
        self.total_steps = state["total_steps"]
        self._set_rng_state(state["rng"])
        tally = state["tally"]
        self._epoch_tally = (
            None
            if tally is None
            else (*tally[:2], torch.tensor(tally[2], device=self.device), *tally[3:])
        )
        new_records = state["records"][len(self.records) :]
        self.records = list(state["records"])
        self.results = list(state["results"])
        self.phases = list(state["phases"])
        self._reused_steps = state["reused_steps"]
        self._on_trunk = state["on_trunk"]
        self._trunk_point = state["trunk_point"]
        if self._on_trunk:
            self._mark_trunk()
        if state["outer"] is not None and self._outer is not None:
            wall, cpu, start_step = state["outer"]
            frame, now = self._outer, time.perf_counter()
            frame.resumed_s = wall  # done before the interruption: in wall_s, not metered
            frame.wall, frame.cpu = now - wall, time.process_time() - cpu
            frame.carved, frame.carved_readings = self._carved, len(self._carved_readings)
            frame.start_step = start_step
        if self.on_epoch_end is not None:
            for record in new_records:
                self.on_epoch_end(record)
        if self.on_progress is not None:
            self.on_progress(self._step, self.total_steps)
        return True

    def _rng_state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return rng

    def _set_rng_state(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])

    def _mark_trunk(self) -> None:
        """Remember model, tensor versions and RNG: a change before the next train() leaves."""
        self._trunk_mark = (self._model, _versions(self._model), self._rng_state())

    def _trunk_intact(self) -> bool:
        """Still on the trunk: same model, untouched since the last trunk point, no masks."""
        if not self._on_trunk or self._trunk_mark is None:
            return False
        model, versions, rng = self._trunk_mark
        intact = (
            model is self._model
            and self.total_steps == self.recipe_steps
            and next(masked_parameters(self._model), None) is None
            and _versions(self._model) == versions
            and _same_rng(self._rng_state(), rng)
        )
        self._on_trunk = intact
        return intact

    def _resume_trunk(self, stop: int) -> bool:
        """Restore the latest cached trunk state in (step, stop]; False when there is none."""
        assert self._trunk is not None
        start = self._step
        best = self._trunk.best(start, stop)
        if best is None:
            return False
        state = self._trunk.load(best, self.device)
        self._model.load_state_dict(state.model)
        self._optimizer.load_state_dict(state.optimizer)
        self._lr = None
        self._step = best
        self._set_rng_state(state.rng)
        self._epoch_tally = state.tally
        reused = clip_segments(state.segments, start, best)
        for seg in reused:
            steps = seg.end_step - seg.start_step
            self.phases.append(
                PhaseRecord(
                    name="train",
                    kind="train",
                    wall_s=seg.wall_s,
                    cpu_s=seg.cpu_s,
                    start_step=self._steps_trained,
                    end_step=self._steps_trained + steps,
                    readings=list(seg.readings),
                    reused=True,
                )
            )
            self._steps_trained += steps
        self._reused_steps += best - start
        new_records = [r for r in state.records if r.step > start]
        self.records.extend(new_records)
        point = self._trunk_point
        self._trunk_point = _TrunkPoint(
            (*clip_segments(list(point.segments), 0, start), *reused),
            (*(r for r in point.records if r.step <= start), *new_records),
        )
        if self.on_epoch_end is not None:
            for record in new_records:
                self.on_epoch_end(record)
        if self.on_progress is not None:
            self.on_progress(best, self.total_steps)
        return True

    def _end_trunk_segment(self) -> None:
        """Cache the state at the end of a trunk segment (unless stored) and mark it."""
        assert self._trunk is not None
        if next(masked_parameters(self._model), None) is not None:
            self._on_trunk = False  # a step hook masked the model: not the trunk any more
            return
        if not self._trunk.has(self._step):
            self._trunk.save(
                TrunkState(
                    step=self._step,
                    model=self._model.state_dict(),
                    optimizer=self._optimizer.state_dict(),
                    rng=self._rng_state(),
                    records=list(self._trunk_point.records),
                    tally=self._epoch_tally,
                    segments=list(self._trunk_point.segments),
                )
            )
        self._mark_trunk()

    def _train_epoch(self, phase: str, epoch: int, first: int, last: int) -> None:
        """Train batches `first:last` of `epoch`; record the epoch if that completes it."""
        started = time.perf_counter()
        model, optimizer, recipe = self._model, self._optimizer, self.recipe
        steps_per_epoch, total = self.steps_per_epoch, self.total_steps
        step = self._step
        on_progress = self.on_progress
        step_hooks = self._step_hooks
        every = max(1, total // 100)
        # Without a listener the progress check never fires: one int compare per step.
        next_report = (step // every + 1) * every if on_progress is not None else -1
        loss_sum = torch.zeros((), device=self.device)
        model.train()
        for x, y in self._source.batches(epoch, first, last):
            lr = self.lr_at(step)
            if lr != self._lr:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                self._lr = lr
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulated on the device: reading it here would wait for the GPU every step.
            loss_sum += loss.detach()
            step += 1
            self._step = step
            self._steps_trained += 1
            if step_hooks:
                for hook in step_hooks:
                    hook()
            if step == next_report:
                on_progress(step, total)  # type: ignore[misc]
                next_report += every
        # An epoch may be trained in pieces (train(until="Nit") calls): its record covers all
        # of them, as long as they are contiguous (a restore elsewhere starts a new tally).
        tally = self._epoch_tally
        if tally is None or tally[0] != epoch or tally[1] != first:
            tally = (epoch, first, torch.zeros((), device=self.device), 0, 0.0)
        tally = (
            epoch,
            last,
            tally[2] + loss_sum,
            tally[3] + (last - first),
            tally[4] + time.perf_counter() - started,
        )
        self._epoch_tally = tally
        if last < steps_per_epoch:
            return
        self._epoch_tally = None
        train_loss = tally[2].item() / tally[3]
        seconds = tally[4]
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
            correct = torch.zeros((), dtype=torch.int64, device=self.device)
            loss = torch.zeros((), device=self.device)
            n = 0
            try:
                with torch.no_grad():
                    for x, y in self._source.eval_batches(split):
                        out = self._model(x)
                        loss += F.cross_entropy(out, y, reduction="sum")
                        correct += (out.argmax(1) == y).sum()
                        n += len(y)
            finally:
                for module, training in modes:
                    module.training = training
        return {"accuracy": correct.item() / n, "loss": loss.item() / n}

    def snapshot(self) -> Snapshot:
        """A deep copy of model, optimizer state, step and RNG states to `restore` later."""
        on_trunk = self.on_trunk
        return Snapshot(
            model=copy.deepcopy(self._model),
            optimizer_state=copy.deepcopy(self._optimizer.state_dict()),
            step=self._step,
            rng=self._rng_state(),
            trunk=self._trunk_point if on_trunk else None,
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Go back to `snapshot` (reusable); `steps_trained` keeps counting the work done."""
        # Copies again so one snapshot can be restored many times (IMP rewinds every level).
        self.model = copy.deepcopy(snapshot.model)
        self._optimizer.load_state_dict(copy.deepcopy(snapshot.optimizer_state))
        self._step = snapshot.step
        self._set_rng_state(snapshot.rng)
        if snapshot.trunk is not None and self._trunk is not None:
            # back on the trunk (IMP rewinds to its step-k state): the restored model is it
            self._on_trunk = self.total_steps == self.recipe_steps
            self._trunk_point = snapshot.trunk
            self._mark_trunk()

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
        `pcnbench.masks`), else params / dense_params; `compression` is dense_params / params and
        `speedup` dense_macs / macs (theoretical). Keys in `extra` add or override columns.
        """
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
            "compression": self.dense_params / params if params else None,
            "speedup": self.dense_macs / macs if macs else None,
            "train_time_s": self.train_time_s,
            "incurred_time_s": self.incurred_time_s,
            "trunk_reused_epochs": self._reused_steps / self.steps_per_epoch,
            "transform_time_s": sum(p.wall_s for p in self.phases if p.kind == "transform"),
            "eval_time_s": sum(p.wall_s for p in self.phases if p.kind == "eval"),
            "epochs_trained": self.epochs_trained,
            "step": self._step,
            "resumed": self._checkpoint is not None and self._checkpoint.resumed,
        }
        row.update(energy_columns(self.phases))
        if self.measure_inference:
            # timed on its own, outside the metered phases: it is not work the method did
            row.update(
                measure_inference(
                    self._model, self.input_shape, self.recipe.batch_size, self.device
                )
            )
        else:
            row.update(
                latency_ms=math.nan,
                throughput_sps=math.nan,
                inference_method="not measured: metering disabled",
            )
        row.update(extra)
        self.results.append(row)
        return row


def _versions(model: nn.Module) -> tuple[int, ...]:
    # Every in-place change of a tensor bumps its version: edits outside train() show here.
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


def _same_rng(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys() or not torch.equal(a["torch"], b["torch"]):
        return False
    if a["python"] != b["python"]:
        return False
    na, nb = a["numpy"], b["numpy"]
    if na[0] != nb[0] or not np.array_equal(na[1], nb[1]) or tuple(na[2:]) != tuple(nb[2:]):
        return False
    if "cuda" in a:
        return all(torch.equal(x, y) for x, y in zip(a["cuda"], b["cuda"], strict=True))
    return True
