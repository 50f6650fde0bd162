"""The shared dense trunk: training states that cells with the same setup can branch from.

Cells that share dataset, model, seed and recipe train the same dense network until their
method first departs from plain training (a transform, a mask, fine-tuning). A `TrunkCache`
holds the states at the ends of such dense segments, keyed by a hash of everything that
determines them, so the next cell restores the latest one instead of training it again.
Each state carries the wall time and meter readings its segments took, so a cell that reuses
them is still charged as if it had trained alone. A `TrunkTracker` follows one session along
the trunk: whether it is still on it, and the cache trips of its `train()` calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pcnbench.contracts import Reading
from pcnbench.masks import masked_parameters
from pcnbench.metering import _additive
from pcnbench.records import EpochRecord, PhaseRecord
from pcnbench.state import Trainer, TrainingState, load, rng_state, same_rng, save

__all__ = [
    "Segment",
    "TrunkCache",
    "TrunkPoint",
    "TrunkState",
    "TrunkTracker",
    "clip_segments",
    "trunk_key",
]

_STATE = re.compile(r"^step_(\d+)\.pt$")


def trunk_key(config_for_id: dict[str, Any], **context: Any) -> str:
    """Hash of a cell's canonical for-id configuration without its method, plus `context`.

    `context` names what else decides the trunk's numbers (pcnbench version, device type,
    deterministic kernels); two cells with the same key train the same dense prefix.
    """
    trunk = {k: v for k, v in config_for_id.items() if k != "method"}
    blob = json.dumps({**trunk, **context}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Segment:
    """A stretch of trunk training [start_step, end_step) and what it cost when it was trained."""

    start_step: int
    end_step: int
    wall_s: float
    cpu_s: float
    readings: list[Reading] = field(default_factory=list)


@dataclass(frozen=True)
class TrunkPoint:
    """How a session got to a trunk step: the segments it is charged for, the epochs' records."""

    segments: tuple[Segment, ...] = ()  # cover steps 0..step
    records: tuple[EpochRecord, ...] = ()  # the trunk's, steps 1..step


@dataclass(frozen=True)
class TrunkState:
    """A trunk step: its training state and how it was reached."""

    state: TrainingState
    point: TrunkPoint


class TrunkCache:
    """Trunk states of one key under `<root>/<key>/step_<N>.pt` (written atomically)."""

    def __init__(self, root: str | Path, key: str) -> None:
        self.key = key
        self.dir = Path(root) / key

    def steps(self) -> list[int]:
        """Steps with a stored state, ascending."""
        if not self.dir.is_dir():
            return []
        found = (_STATE.match(p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def best(self, after: int, until: int) -> int | None:
        """The largest stored step in (after, until], or None."""
        usable = [s for s in self.steps() if after < s <= until]
        return usable[-1] if usable else None

    def has(self, step: int) -> bool:
        """Whether a state for `step` is stored."""
        return self._path(step).is_file()

    def load(self, step: int, device: torch.device | str = "cpu") -> TrunkState:
        """The state stored for `step`, its model and tally on `device`."""
        return load(self._path(step), TrunkState, device)

    def save(self, trunk: TrunkState) -> Path:
        """Store `trunk` (temp file, then rename: readers never see half a file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(trunk.state.step)
        save(path, trunk)
        return path

    def _path(self, step: int) -> Path:
        return self.dir / f"step_{step}.pt"


class TrunkTracker:
    """A session's place on the shared dense trunk of `cache` (never on it without a cache).

    While a session only trains the model it was given, plainly (no replacement, masks,
    fine-tuning, edits or RNG draws in between), its states equal those of any cell with the
    same setup: its `train()` calls restore cached states instead of training them, and cache
    the states they reach.
    """

    def __init__(self, cache: TrunkCache | None) -> None:
        self.cache = cache
        self.on = False
        self.point = TrunkPoint()
        self.reused_steps = 0  # steps restored from the cache instead of trained
        self._mark: tuple[nn.Module, tuple[int, ...], dict[str, Any]] | None = None

    def start(self, session: Trainer) -> None:
        """Put a new session on the trunk (with a cache): its model is the trunk's start."""
        if self.cache is not None:
            self.on = True
            self._set_mark(session)

    def leave(self) -> None:
        """Leave the trunk (the model was replaced); a snapshot restore may come back."""
        self.on = False

    def intact(self, session: Trainer) -> bool:
        """Still on the trunk: same model, untouched since the last trunk point, no masks."""
        if self.cache is None or not self.on or self._mark is None:
            return False
        model, versions, rng = self._mark
        intact = (
            model is session.model
            and session.total_steps == session.recipe_steps
            and next(masked_parameters(model), None) is None
            and _versions(model) == versions
            and same_rng(rng_state(session.device), rng)
        )
        self.on = intact
        return intact

    def enter(self, session: Trainer, plain: bool) -> bool:
        """Whether a `train()` call continues the trunk: `plain` training of an intact trunk."""
        self.on = plain and self.intact(session)
        return self.on

    def resume(self, session: Trainer, stop: int) -> bool:
        """Restore the latest cached trunk state in (step, stop]; False when there is none."""
        assert self.cache is not None
        start = session.step
        best = self.cache.best(start, stop)
        if best is None:
            return False
        try:
            trunk = self.cache.load(best, session.device)
        except ValueError:  # another format: train instead
            return False
        session._apply(trunk.state)
        reused = clip_segments(trunk.point.segments, start, best)
        for seg in reused:
            steps = seg.end_step - seg.start_step
            session.phases.append(
                PhaseRecord(
                    name="train",
                    kind="train",
                    wall_s=seg.wall_s,
                    cpu_s=seg.cpu_s,
                    start_step=session.steps_trained,
                    end_step=session.steps_trained + steps,
                    readings=list(seg.readings),
                    reused=True,
                )
            )
            session._steps_trained += steps
        self.reused_steps += best - start
        new_records = [r for r in trunk.point.records if r.step > start]
        session.records.extend(new_records)
        self.point = TrunkPoint(
            (*clip_segments(self.point.segments, 0, start), *reused),
            (*(r for r in self.point.records if r.step <= start), *new_records),
        )
        session._announce(new_records)
        return True

    def end_segment(self, session: Trainer, start: int, records: Sequence[EpochRecord]) -> None:
        """End a trunk `train()` call (trained from `start`): extend the point, cache, mark."""
        assert self.cache is not None
        if session.step > start:
            p = session.phases[-1]
            self.point = TrunkPoint(
                (*self.point.segments, Segment(start, session.step, p.wall_s, p.cpu_s, p.readings)),
                (*self.point.records, *records),
            )
        if next(masked_parameters(session.model), None) is not None:
            self.on = False  # a step hook masked the model: not the trunk any more
            return
        if not self.cache.has(session.step):
            self.cache.save(TrunkState(session._capture(), self.point))
        self._set_mark(session)

    def rejoin(self, session: Trainer, point: TrunkPoint | None) -> None:
        """Back to a trunk `point` (a restored snapshot taken on the trunk), if any."""
        if point is not None and self.cache is not None:
            self.on = session.total_steps == session.recipe_steps
            self.point = point
            self._set_mark(session)

    def restore(self, session: Trainer, point: TrunkPoint | None, reused_steps: int) -> None:
        """Take the place a checkpoint stored (`point` None: off the trunk)."""
        self.on = point is not None
        self.point = point if point is not None else TrunkPoint()
        self.reused_steps = reused_steps
        if self.on:
            self._set_mark(session)

    def _set_mark(self, session: Trainer) -> None:
        """Remember model, tensor versions and RNG: a change before the next train() leaves."""
        model = session.model
        self._mark = (model, _versions(model), rng_state(session.device))


def _versions(model: nn.Module) -> tuple[int, ...]:
    # Every in-place change of a tensor bumps its version: edits outside train() show here.
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


def clip_segments(segments: Iterable[Segment], start: int, end: int) -> list[Segment]:
    """The parts of `segments` inside [start, end), cost prorated by steps where one is cut."""
    out = []
    for s in segments:
        lo, hi = max(s.start_step, start), min(s.end_step, end)
        if hi <= lo:
            continue
        if (lo, hi) == (s.start_step, s.end_step):
            out.append(s)
            continue
        f = (hi - lo) / (s.end_step - s.start_step)
        readings = [
            Reading(
                r.component,
                r.joules * f,
                r.method,
                r.estimate,
                r.note,
                {k: v * f if _additive(k) else v for k, v in r.extra.items()},
            )
            for r in s.readings
        ]
        out.append(Segment(lo, hi, s.wall_s * f, s.cpu_s * f, readings))
    return out
