"""How many workers the grid search can run at once in the machine's free memory.

Each worker of the search holds its own working copies of a fold (worker processes also a Python interpreter
with NumPy, SciPy and scikit-learn loaded), so on a large store more workers than the free memory holds
would swap or be killed. The count never changes the results: the units are the same whoever runs them.
"""
from __future__ import annotations

# What a worker process holds before any unit: an interpreter with NumPy, SciPy and scikit-learn loaded.
WORKER_BASE_BYTES = 300 * 2**20
# Left free for the coordinating process and everything else on the machine.
RESERVE_FRACTION = 0.2


def available_memory() -> int | None:
    """Bytes of memory available to new allocations without swapping (Linux: MemAvailable, capped by a
    cgroup limit when there is one); None where it cannot be read."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return None
    limit = _cgroup_room()
    return free if limit is None or free is None else min(free, limit)


def _cgroup_room() -> int | None:
    """Bytes the cgroup (v2) still lets this process allocate, or None without a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        if text == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as fh:
            return max(0, int(text) - int(fh.read().strip()))
    except (OSError, ValueError):
        return None


def memory_workers(n_jobs: int, per_worker: int, processes: bool, available: int | None = None
                   ) -> tuple[int, str]:
    """(workers, a sentence saying why) for units that each need ``per_worker`` bytes while they run; worker
    processes (``processes``) also hold WORKER_BASE_BYTES each. ``available`` defaults to available_memory();
    RESERVE_FRACTION of it is kept free. Never fewer than one worker, never more than ``n_jobs``."""
    available = available_memory() if available is None else available
    need = int(per_worker) + (WORKER_BASE_BYTES if processes else 0)
    kind = "worker processes" if processes else "worker threads"
    if available is None:
        return n_jobs, f"{n_jobs} {kind} (free memory unknown)"
    room = int(available * (1.0 - RESERVE_FRACTION))
    workers = max(1, min(n_jobs, room // max(1, need)))
    why = f"{_gb(available)} available, about {_gb(need)} each"
    if workers < n_jobs:
        why += f"; {n_jobs} would not fit"
    return workers, f"{workers} {kind} ({why})"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"
