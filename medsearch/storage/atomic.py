"""Crash-safe file replacement: write a temporary file beside the target, fsync it, rename it over the target,
fsync the folder. A crash at any moment leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from ..errors import MedsearchError


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file, or a folder (which makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def io_error(exc: OSError, path: str | os.PathLike) -> MedsearchError:
    """Translate an OSError met while writing ``path`` into a one-line MedsearchError."""
    if exc.errno == errno.ENOSPC:
        return MedsearchError(f"disk full while writing '{path}': free some space and run again (what was stored before is intact)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return MedsearchError(f"cannot write '{path}' ({exc.strerror}): choose a writable --out folder (what was stored before is intact)")
    return MedsearchError(f"cannot write '{path}': {exc.strerror or exc} (what was stored before is intact)")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``target`` atomically, on error it is removed."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield str(tmp)
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    except OSError as exc:
        _remove(tmp)
        raise io_error(exc, target) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike, obj) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_write_with(target: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Let ``write(tmp_path)`` produce the file (e.g. faiss.write_index, h5py), then swap it in."""
    with atomic_path(target) as tmp:
        write(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
