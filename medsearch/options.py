"""Checks shared by every command's options: each failure is one line that names the flag to change."""
from __future__ import annotations

import math
import numbers
import os

from .errors import MedsearchError


def is_real(value) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_whole(flag: str, value, minimum: int, maximum: int | None = None) -> None:
    """``value`` must be a whole number in [minimum, maximum]; the message names ``flag``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"of at least {minimum}"
        raise MedsearchError(f"{flag} must be a whole number {bound}, got {value!r}")


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_for(n_jobs: int | None) -> int:
    """Workers to use: every usable core for None, never more than the usable cores."""
    cores = max(1, available_cores())
    return cores if n_jobs is None else max(1, min(int(n_jobs), cores))
