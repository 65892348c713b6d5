"""One app per data dir: an OS file lock that dies with its process."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable
from pathlib import Path

from core.errors import Conflict, RefineryError


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, description: str = "") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Conflict(
                f"another Refinery is already using the data dir {self.path.parent} "
                f"(process {holder}); stop it or start with another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} {description}".strip().encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_holding(path: Path, description: str, action: Callable[[], None], *, program: str) -> int:
    """A command's exit code: run `action` holding the lock; a RefineryError becomes a one-line
    message on stderr and exit code 2, not a traceback."""
    lock = InstanceLock(path)
    try:
        lock.acquire(description)
        action()
    except RefineryError as error:
        print(f"{program}: {error.message}", file=sys.stderr)
        return 2
    finally:
        lock.release()
    return 0
