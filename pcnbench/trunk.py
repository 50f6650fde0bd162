"""The shared dense trunk: training states that cells with the same setup can branch from.

Cells that share dataset, model, seed and recipe train the same dense network until their
method first departs from plain training (a transform, a mask, fine-tuning). A `TrunkCache`
holds the states at the ends of such dense segments, keyed by a hash of everything that
determines them, so the next cell restores the latest one instead of training it again.
Each state carries the wall time and meter readings its segments took, so a cell that reuses
them is still charged as if it had trained alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pcnbench.checkpoint import write_atomic
from pcnbench.contracts import Reading
from pcnbench.metering import _additive

__all__ = ["Segment", "TrunkCache", "TrunkState", "clip_segments", "trunk_key"]

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


@dataclass
class TrunkState:
    """Everything a session needs to continue from a trunk step exactly as if it had trained."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    records: list[Any]  # EpochRecords of the trunk, steps 1..step
    tally: tuple[int, int, torch.Tensor, int, float] | None  # a partly trained epoch
    segments: list[Segment]  # cover steps 0..step


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
        return (self.dir / f"step_{step}.pt").is_file()

    def load(self, step: int, device: torch.device | str = "cpu") -> TrunkState:
        """The state stored for `step`, tensors on `device` (RNG states stay on the CPU)."""
        saved = torch.load(self.dir / f"step_{step}.pt", map_location="cpu", weights_only=False)
        state = TrunkState(**saved)
        state.model = {k: v.to(device) for k, v in state.model.items()}
        if state.tally is not None:
            epoch, first, loss, batches, seconds = state.tally
            state.tally = (epoch, first, loss.to(device), batches, seconds)
        return state

    def save(self, state: TrunkState) -> Path:
        """Store `state` (temp file, then rename: readers never see half a file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step_{state.step}.pt"
        tally = state.tally
        if tally is not None:
            tally = (tally[0], tally[1], tally[2].detach().cpu(), tally[3], tally[4])
        payload = {
            "step": state.step,
            "model": {k: v.detach().cpu() for k, v in state.model.items()},
            "optimizer": _to_cpu(state.optimizer),
            "rng": state.rng,
            "records": list(state.records),
            "tally": tally,
            "segments": list(state.segments),
        }
        write_atomic(path, lambda f: torch.save(payload, f))
        return path


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def clip_segments(segments: list[Segment], start: int, end: int) -> list[Segment]:
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
