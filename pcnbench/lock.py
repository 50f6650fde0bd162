"""One `pcnbench run` per output directory: an advisory lock a dead process cannot keep.

The lock file exists only while a run holds it (one SIGKILLed leaves it, unheld).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pcnbench.errors import PcnbenchError
from pcnbench.output import LOCK_NAME, WRITABLE_ADVICE, OutputFolderError, not_a_folder

__all__ = ["OutputLock", "OutputLockedError"]


class OutputLockedError(PcnbenchError):
    """Another live process is running a suite into the same output directory."""


class OutputLock:
    """An flock on `<output>/.pcnbench.lock` holding the owner's pid.

    The kernel drops the lock when its process dies (even by SIGKILL), so a stale lock file is
    simply reacquired; only a live owner makes a second run refuse.
    """

    def __init__(self, output: str | Path) -> None:
        self.path = Path(output) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise OutputLockedError naming the holder's pid.

        The lock file is removed when the lock is released; a lock taken on a file that was
        removed (or replaced) meanwhile is dropped and taken again on the file now there, so
        two runs never hold locks on two different files of the same path.
        """
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise not_a_folder(folder) from None
        except OSError as exc:
            raise OutputFolderError(
                f"output folder {folder} cannot be created ({exc.strerror}: {exc.filename}); "
                + WRITABLE_ADVICE
            ) from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputFolderError(
                    f"output folder {folder} cannot be written ({exc.strerror}); " + WRITABLE_ADVICE
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputLockedError(
                    f"another pcnbench run (pid {holder}) is writing to {folder}; "
                    "wait for it to finish or use a different --output"
                ) from None
            if self._is_current(fd):
                break
            os.close(fd)  # its holder removed it as we opened it: lock the file there now
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def _is_current(self, fd: int) -> bool:
        """Whether `fd` is still the file at the lock's path."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the lock file and drop the lock (removed first, while still held)."""
        if self._fd is not None:
            try:
                if self._is_current(self._fd):
                    self.path.unlink()
            except OSError:
                pass  # a lock file left behind is harmless: no one holds it
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
