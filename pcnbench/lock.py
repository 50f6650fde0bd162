"""One `pcnbench run` per output directory: an advisory lock a dead process cannot keep."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pcnbench.errors import PcnbenchError

__all__ = ["OutputLock", "OutputLockedError"]


class OutputLockedError(PcnbenchError):
    """Another live process is running a suite into the same output directory."""


class OutputLock:
    """An flock on `<output>/.pcnbench.lock` holding the owner's pid.

    The kernel drops the lock when its process dies (even by SIGKILL), so a stale lock file is
    simply reacquired; only a live owner makes a second run refuse.
    """

    def __init__(self, output: str | Path) -> None:
        self.path = Path(output) / ".pcnbench.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise OutputLockedError naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputLockedError(
                f"another pcnbench run (pid {holder}) is writing to {self.path.parent}; "
                "wait for it to finish or use a different --output"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; it is harmless without a holder)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
