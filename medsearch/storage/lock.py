"""One writer per index folder: `index` holds an exclusive ``flock`` on ``.lock`` while it writes, and a second
writer is refused with the first one's pid. Readers take no lock: they read a snapshot (store.py)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .atomic import io_error
from .schema import LOCK_FILE
from ..errors import MedsearchError


class WriterLock:
    """Exclusive advisory lock on an index folder; released by the OS even on kill -9."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "WriterLock":
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise io_error(exc, self.path) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise MedsearchError(f"another medsearch process (pid {holder}) is writing '{self.path.parent}': "
                                 "wait for it to finish, or write to another --out folder") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
