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
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["CellCheckpoint", "write_atomic"]

_OP = re.compile(r"^op_(\d+)\.pt$")
_LIVE = "live.pt"
_META = "key.json"


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
                self._live_op = int(torch.load(live, map_location="cpu", weights_only=False)["op"])
            except Exception:  # a torn or foreign file: ignore it
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

    def load_op(self, op: int, device: torch.device) -> dict[str, Any]:
        """The end state of call `op`."""
        self.resumed = True
        return torch.load(self.dir / f"op_{op}.pt", map_location=device, weights_only=False)

    def load_live(self, device: torch.device) -> dict[str, Any]:
        """The stored mid-call state."""
        self.resumed = True
        return torch.load(self.dir / _LIVE, map_location=device, weights_only=False)

    def due(self) -> bool:
        """Whether enough of the cell's time passed since the last write to write again."""
        return time.monotonic() - self._last_write >= self.every_s

    def save_op(self, op: int, state: dict[str, Any]) -> None:
        """Store the end state of call `op`."""
        self._write(f"op_{op}.pt", state)
        self._scan()
        assert self._ops is not None
        self._ops.add(op)

    def save_live(self, state: dict[str, Any]) -> None:
        """Store a mid-call state (replacing the previous one)."""
        self._write(_LIVE, state)
        self._live_op = int(state["op"])

    def _write(self, name: str, state: dict[str, Any]) -> None:
        self._scan()
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / _META
        if not meta.is_file():
            write_atomic(meta, lambda f: f.write(json.dumps({"key": self.key}).encode("utf-8")))
        write_atomic(self.dir / name, lambda f: torch.save(state, f))
        self._last_write = time.monotonic()

    def clear(self) -> None:
        """Delete every stored state (the cell finished, or its checkpoints are stale)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self._ops, self._live_op = set(), None


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """`write(f)` to a temporary file beside `path`, then rename it over `path`.

    Readers (and a run resumed after a kill) see the old file or the whole new one, never half.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
