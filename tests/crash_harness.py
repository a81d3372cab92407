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


# ---- crash points: SIGKILL at one exact file write (format 2) ---------------------------------------------
# Every file medsearch writes goes through storage.atomic.atomic_path (segments, store.json, FAISS indexes,
# journal parts, reports). The probe below numbers those writes, logs each one (file name and the medsearch
# functions on the stack) and, at the chosen one, kills its own process with SIGKILL: before the write, with its
# temporary file half written, or right after the rename. Run as
#   python -m tests.crash_harness --log LOG [--crash-at N --phase P] [--tiny] -- MEDSEARCH ARGS...
# A clean run with the probe (``install_write_probe`` in-process, crash_at=0) lists the writes to choose from.

PHASES = ("before", "half", "after")
REPO = Path(__file__).resolve().parents[1]


def install_write_probe(log: Path, crash_at: int = 0, phase: str = "after"):
    """Replace atomic.atomic_path by a counting, logging one that SIGKILLs at write ``crash_at``; returns the
    original, for a caller that wants to put it back."""
    import contextlib
    import json

    from medsearch.storage import atomic

    original = atomic.atomic_path
    count = [0]

    @contextlib.contextmanager
    def probed(target):
        count[0] += 1
        n = count[0]
        stack = _medsearch_stack()
        with open(log, "a") as f:
            f.write(json.dumps({"n": n, "file": Path(target).name, "stack": stack}) + "\n")
        if n == crash_at and phase == "before":
            _die()
        with original(target) as tmp:
            yield tmp
            if n == crash_at and phase == "half":  # the temporary file is written, not yet renamed: cut it short
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                _die()
        if n == crash_at and phase == "after":
            _die()

    atomic.atomic_path = probed
    return original


def read_write_log(log: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]


def _medsearch_stack() -> list[str]:
    frame, names = sys._getframe(2), []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("medsearch."):
            names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def use_tiny_encoder() -> None:
    """What the tests' ``tiny`` fixture does, for a child process: the TinyEncoder stands in for any --model."""
    from types import SimpleNamespace

    import medsearch.ingest.indexing as index_module
    import medsearch.search.query as query_module
    from tests.conftest import TinyEncoder

    index_module.load_encoder = lambda *a, **k: TinyEncoder()
    index_module.get_spec = lambda name: SimpleNamespace(preprocess=None)
    index_module.preprocess_with = lambda *a, **k: TinyEncoder.preprocess
    query_module.load_encoder = lambda *a, **k: TinyEncoder()


def crash_run(args: list[str], log: Path, crash_at: int, phase: str, *, tiny: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """``medsearch ARGS`` in a child process killed at write ``crash_at`` (see above)."""
    cmd = [sys.executable, "-m", "tests.crash_harness", "--log", str(log), "--crash-at", str(crash_at),
           "--phase", phase, *(["--tiny"] if tiny else []), "--", *[str(a) for a in args]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.crash_harness")
    parser.add_argument("--log", required=True)
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--phase", choices=PHASES, default="after")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    install_write_probe(Path(ns.log), ns.crash_at, ns.phase)
    if ns.tiny:
        use_tiny_encoder()
    from medsearch.cli import main

    main(args=args, prog_name="medsearch")


if __name__ == "__main__":
    _main(sys.argv[1:])
