"""SIGKILL `medsearch index` at a random moment, resume it, and compare with an uninterrupted run.

Used by tests/test_crash_safety.py (a few trials) and benchmarks/bench_crash_safety.py (many)."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsearch.errors import MedsearchError
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store, store_exists


def index_cmd(dataset: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "medsearch", "index", str(dataset), "--out", str(out), "--quiet", *extra]


def run_index(dataset: Path, out: Path, extra: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(index_cmd(dataset, out, extra), check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t


@dataclass
class Trial:
    kill_at: float           # seconds after start
    killed: bool             # False if the run finished before the kill
    store_after_kill: str    # 'absent' | 'ok'
    complete_rows_ok: bool   # every row marked embedded after the kill equals the clean run's row
    rows_after_kill: int     # rows embedded (committed) when killed
    resumed_equal: bool      # after resuming: same ids, all rows embedded, embeddings identical to the clean run
    error: str = ""


def kill_and_resume(dataset: Path, out: Path, extra: list[str], clean_dir: Path, kill_at: float, model: str) -> Trial:
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen(index_cmd(dataset, out, extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=kill_at)
        killed = False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
    clean = read_store(clean_dir)
    reference = clean.models[model]
    trial = Trial(kill_at, killed, "absent", True, 0, False)
    if store_exists(out):
        try:
            partial = read_store(out)
        except MedsearchError as exc:  # the store must always open
            trial.store_after_kill, trial.error = "unreadable", str(exc)
            return trial
        trial.store_after_kill = "ok"
        if model in partial.models:
            m = partial.models[model]
            done = np.flatnonzero(m.state == EMBEDDED)
            trial.rows_after_kill = int(done.size)
            trial.complete_rows_ok = bool(np.array_equal(m.embedding[done], reference.embedding[done]))
    try:
        subprocess.run(index_cmd(dataset, out, extra), check=True, capture_output=True, timeout=600)
        final = read_store(out)
    except (subprocess.CalledProcessError, MedsearchError) as exc:
        trial.error = getattr(exc, "stderr", b"").decode(errors="replace")[-300:] or str(exc)
        return trial
    m = final.models[model]
    trial.resumed_equal = bool(final.ids == clean.ids and len(set(final.ids)) == len(final.ids)
                               and (m.state == EMBEDDED).all()
                               and np.array_equal(m.embedding, reference.embedding))
    return trial


def run_trials(dataset: Path, workdir: Path, extra: list[str], model: str, n_trials: int, seed: int = 0) -> list[Trial]:
    clean_dir = workdir / "clean"
    shutil.rmtree(clean_dir, ignore_errors=True)
    clean_seconds = run_index(dataset, clean_dir, extra)
    rng = random.Random(seed)
    return [kill_and_resume(dataset, workdir / f"trial{i}", extra, clean_dir, rng.uniform(0.5, clean_seconds), model)
            for i in range(n_trials)]


def symlink_subset(src_root: Path, dest: Path, per_class: int) -> Path:
    """A folder-layout dataset of the first ``per_class`` images of each class folder (symlinks)."""
    for cls in sorted(p for p in src_root.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True, exist_ok=True)
        for img in sorted(cls.iterdir())[:per_class]:
            os.symlink(img.resolve(), dest / cls.name / img.name)
    return dest
