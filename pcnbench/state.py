"""One training state for snapshots, trunk states and checkpoints, and the one way to store it.

A `TrainingState` is a point of training: model and optimizer state, schedule step, the global
RNG states and the epoch being trained in pieces. A session captures it and applies it; what
else each use needs is its own: a snapshot keeps a copy of the model to rewind to, a trunk
state how the trunk got there, a checkpoint the bookkeeping of the call it was taken in. The
stored ones go through `save` and `load`: tensors on the CPU in the file, written atomically.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import torch

from pcnbench.errors import DiskFullError

if TYPE_CHECKING:
    from torch import nn

    from pcnbench.records import EpochRecord, PhaseRecord

__all__ = [
    "EpochTally",
    "Stored",
    "Trainer",
    "TrainingState",
    "load",
    "rng_state",
    "same_rng",
    "save",
    "set_rng_state",
    "write_atomic",
]


@dataclass(frozen=True)
class EpochTally:
    """The epoch being trained in pieces: where its next piece starts, what those before added.

    An epoch record covers all pieces as long as they are contiguous; a piece that does not
    start at `next_batch` of `epoch` starts a new tally.
    """

    epoch: int
    next_batch: int
    loss_sum: torch.Tensor  # on the session's device: reading it would wait for the GPU
    batches: int
    seconds: float
    # The epoch's first non-finite loss so far, on the device: (its batch in the epoch, 1 if it
    # was inf else 0), or (-1, -1) while every loss was finite. Read only when the sum is not.
    nonfinite: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> EpochTally:
        """This tally with its tensors on `device`."""
        nonfinite = None if self.nonfinite is None else self.nonfinite.detach().to(device)
        return dataclasses.replace(
            self, loss_sum=self.loss_sum.detach().to(device), nonfinite=nonfinite
        )


@dataclass(frozen=True)
class TrainingState:
    """Everything needed to continue training from a point exactly as if it had never been left."""

    step: int  # the schedule position: optimizer steps done
    model: dict[str, torch.Tensor]  # the model's state_dict
    optimizer: dict[str, Any]  # the optimizer's state_dict
    rng: dict[str, Any]  # see `rng_state`
    tally: EpochTally | None = None  # the epoch `step` is inside of, if trained in pieces

    def cpu(self) -> TrainingState:
        """This state with every tensor on the CPU (what `save` writes)."""
        return dataclasses.replace(
            self,
            model=_to(self.model, "cpu"),
            optimizer=_to(self.optimizer, "cpu"),
            tally=None if self.tally is None else self.tally.to("cpu"),
        )

    def to(self, device: torch.device | str) -> TrainingState:
        """This state with model and tally on `device` (what `load` returns).

        The optimizer's state stays where it is: `Optimizer.load_state_dict` places it beside
        the parameters. RNG states always stay on the CPU.
        """
        return dataclasses.replace(
            self,
            model=_to(self.model, device),
            tally=None if self.tally is None else self.tally.to(device),
        )


class Trainer(Protocol):
    """The session as the trunk tracker and the checkpoint replay see it: what they read, and
    the calls that capture, apply and announce training states."""

    device: torch.device
    total_steps: int
    recipe_steps: int
    records: list[EpochRecord]
    results: list[dict[str, Any]]
    _steps_trained: int

    @property
    def model(self) -> nn.Module:
        """The network being trained."""
        ...

    @property
    def step(self) -> int:
        """The schedule position."""
        ...

    @property
    def steps_trained(self) -> int:
        """Every step taken so far."""
        ...

    @property
    def phases(self) -> list[PhaseRecord]:
        """The recorded phases (a list the caller may extend)."""
        ...

    def _capture(self) -> TrainingState: ...

    def _apply(self, state: TrainingState) -> None: ...

    def _announce(self, records: Sequence[EpochRecord]) -> None: ...


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch, Python and NumPy RNG states, and CUDA's on a CUDA `device`."""
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: dict[str, Any], device: torch.device) -> None:
    """Put back RNG states taken by `rng_state` (CUDA's only on a CUDA `device`)."""
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])


def same_rng(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two `rng_state` results are equal (no draw happened between them)."""
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


class Stored(Protocol):
    """What `save` writes: a dataclass holding a `TrainingState` and what its use adds."""

    state: TrainingState


S = TypeVar("S", bound=Stored)


def save(path: Path, stored: Stored) -> None:
    """Write `stored` (a dataclass) to `path` atomically, its training state on the CPU."""
    payload = dataclasses.replace(stored, state=stored.state.cpu())
    write_atomic(path, lambda f: torch.save(payload, f))


def load(path: Path, kind: type[S], device: torch.device | str) -> S:
    """Read what `save` wrote to `path` as a `kind`, its training state moved to `device`.

    ValueError when the file cannot be read or holds something else (say, an older format).
    """
    try:
        stored = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(stored, kind):
        raise ValueError(f"{path}: holds no {kind.__name__}")
    return dataclasses.replace(stored, state=stored.state.to(device))


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """`write(f)` to a temporary file beside `path`, then rename it over `path`.

    Readers (and a run resumed after a kill) see the old file or the whole new one, never half.
    """
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if _no_space(exc):
            raise DiskFullError(
                f"no space left on device while writing {path}; what was stored before is "
                "kept. Free some space and run the same command again to continue"
            ) from None
        raise


def _no_space(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from (torch.save's RuntimeError), is ENOSPC."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def _to(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj
