"""Preemption-safe cells: session states saved at epoch boundaries, replayed on the next run.

A method is a program that drives its session; it cannot be frozen mid-way, but it can be run
again. So a cell resumes by running its method from the start while the session, instead of
training, loads the state each `train()` call ended with in the killed run (`op_<i>.pt`, in
call order), and for the call that was cut short, the state at its last epoch boundary
(`live.pt`), from which it trains on. Everything the method computes between calls (PCA
bases, masks, snapshots to rewind to) is computed again from the same states, so the
resumed cell ends with the same numbers as one that was never interrupted (on CPU with
deterministic kernels).

States are written atomically (a temporary file, then rename), at most once per `every_s`
seconds of the cell's run; a call whose end state was not written is simply trained again.
The directory is keyed like the trunk cache: a cell whose configuration or software changed
starts afresh.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from pcnbench.phases import Elapsed, PhaseClock
from pcnbench.records import EpochRecord, PhaseRecord
from pcnbench.state import Trainer, TrainingState, load, save, write_atomic
from pcnbench.trunk import TrunkPoint, TrunkTracker

__all__ = ["CallState", "CellCheckpoint", "Replay"]


class _Replayed(Trainer, Protocol):
    """The session as the replay sees it: a trainer with its phase clock and trunk tracker."""

    _clock: PhaseClock
    _trunk: TrunkTracker


_OP = re.compile(r"^op_(\d+)\.pt$")
_LIVE = "live.pt"
_META = "key.json"


@dataclass(frozen=True)
class CallState:
    """A session inside or at the end of `train()` call `op` (to step `stop`), as stored."""

    state: TrainingState
    op: int
    stop: int
    steps_trained: int
    total_steps: int
    records: list[EpochRecord]
    results: list[dict[str, Any]]
    phases: list[PhaseRecord]
    trunk: TrunkPoint | None  # the session's point on the shared trunk, while on it
    reused_steps: int  # steps restored from the trunk cache so far
    elapsed: Elapsed | None  # the open outermost phase (the call's, or one around it)


class CellCheckpoint:
    """One cell's checkpoint directory: end states of `train()` calls and one live state."""

    def __init__(self, directory: str | Path, key: str, every_s: float = 60.0) -> None:
        self.dir = Path(directory)
        self.key = key
        self.every_s = every_s
        self._last_write = time.monotonic()
        self._ops: set[int] | None = None
        self._live_op: int | None = None
        self.resumed = False  # set once a state was loaded

    def _scan(self) -> None:
        if self._ops is not None:
            return
        self._ops, self._live_op = set(), None
        if not self.dir.is_dir():
            return
        meta = self.dir / _META
        try:
            key = json.loads(meta.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError):
            key = None
        if key != self.key:  # another configuration or software version: start afresh
            self.clear()
            return
        for path in self.dir.iterdir():
            match = _OP.match(path.name)
            if match:
                self._ops.add(int(match.group(1)))
        live = self.dir / _LIVE
        if live.is_file():
            try:
                self._live_op = load(live, CallState, "cpu").op
            except ValueError:  # a foreign file (say, an older format): ignore it
                self._live_op = None

    def has_op(self, op: int) -> bool:
        """Whether the end state of `train()` call number `op` (0-based) is stored."""
        self._scan()
        assert self._ops is not None
        return op in self._ops

    def live_op(self) -> int | None:
        """The call number of the stored mid-call state, if any."""
        self._scan()
        return self._live_op

    def load_op(self, op: int, device: torch.device) -> CallState:
        """The end state of call `op` (ValueError when the file is foreign)."""
        state = load(self.dir / f"op_{op}.pt", CallState, device)
        self.resumed = True
        return state

    def load_live(self, device: torch.device) -> CallState:
        """The stored mid-call state (ValueError when the file is foreign)."""
        state = load(self.dir / _LIVE, CallState, device)
        self.resumed = True
        return state

    def due(self) -> bool:
        """Whether enough of the cell's time passed since the last write to write again."""
        return time.monotonic() - self._last_write >= self.every_s

    def save_op(self, state: CallState) -> None:
        """Store the end state of call `state.op`."""
        self._write(f"op_{state.op}.pt", state)
        self._scan()
        assert self._ops is not None
        self._ops.add(state.op)

    def save_live(self, state: CallState) -> None:
        """Store a mid-call state (replacing the previous one)."""
        self._write(_LIVE, state)
        self._live_op = state.op

    def _write(self, name: str, state: CallState) -> None:
        self._scan()
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / _META
        if not meta.is_file():
            write_atomic(meta, lambda f: f.write(json.dumps({"key": self.key}).encode("utf-8")))
        save(self.dir / name, state)
        self._last_write = time.monotonic()

    def clear(self) -> None:
        """Delete every stored state (the cell finished, or its checkpoints are stale)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self._ops, self._live_op = set(), None


class Replay:
    """Checkpoints a session's `train()` calls and, in a resumed cell, replays them.

    Calls are numbered in order; a call whose end state is stored loads it instead of
    training, and the call cut short continues from its last stored mid-call state.
    """

    def __init__(self, checkpoint: CellCheckpoint | None) -> None:
        self._checkpoint = checkpoint

    @property
    def resumed(self) -> bool:
        """Whether the session continues from a stored state."""
        return self._checkpoint is not None and self._checkpoint.resumed

    def replay(self, session: _Replayed, op: int, stop: int) -> bool:
        """Load the end state of call `op` if the interrupted run stored it (the call is done)."""
        checkpoint = self._checkpoint
        return checkpoint is not None and checkpoint.has_op(op) and self._load(session, op, stop)

    def resume(self, session: _Replayed, op: int, stop: int) -> None:
        """Inside call `op`: continue from its stored mid-call state, if there is one."""
        checkpoint = self._checkpoint
        if checkpoint is not None and checkpoint.live_op() == op:
            self._load(session, None, stop)

    def save(self, session: _Replayed, op: int, stop: int, *, end: bool) -> None:
        """Store the session at the end of call `op`, or inside it; only when due."""
        checkpoint = self._checkpoint
        if checkpoint is None or not checkpoint.due():
            return
        clock, trunk = session._clock, session._trunk
        clock.sync()
        state = CallState(
            state=session._capture(),
            op=op,
            stop=stop,
            steps_trained=session.steps_trained,
            total_steps=session.total_steps,
            records=list(session.records),
            results=list(session.results),
            phases=list(session.phases),
            trunk=trunk.point if trunk.on else None,
            reused_steps=trunk.reused_steps,
            elapsed=clock.elapsed(),
        )
        if end:
            checkpoint.save_op(state)
        else:
            checkpoint.save_live(state)

    def _load(self, session: _Replayed, op: int | None, stop: int) -> bool:
        """Continue from a stored state: the end of call `op`, or (None) the live mid-call one.

        False, with the checkpoints dropped, when the state cannot be read or does not fit the
        model the method built this time (then the cell trains on as if never interrupted).
        """
        checkpoint = self._checkpoint
        assert checkpoint is not None
        try:
            if op is not None:
                stored: CallState | None = checkpoint.load_op(op, session.device)
            else:
                stored = checkpoint.load_live(session.device)
        except ValueError:
            stored = None
        current = session.model.state_dict()
        fits = (
            stored is not None
            and stored.stop == stop
            and stored.state.model.keys() == current.keys()
            and all(stored.state.model[k].shape == v.shape for k, v in current.items())
            and (stored.elapsed is None) == (not session._clock.open)
        )
        if not fits:
            checkpoint.clear()
            self._checkpoint = None
            return False
        if op is None and stored.state.step <= session.step:
            return False  # the trunk cache already brought this call further
        session._apply(stored.state)
        session._steps_trained = stored.steps_trained
        session.total_steps = stored.total_steps
        new_records = stored.records[len(session.records) :]
        session.records = list(stored.records)
        session.results = list(stored.results)
        session.phases[:] = stored.phases
        session._trunk.restore(session, stored.trunk, stored.reused_steps)
        if stored.elapsed is not None:
            session._clock.resume(stored.elapsed)
        session._announce(new_records)
        return True
