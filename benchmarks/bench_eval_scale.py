"""`medsearch eval` (default heads) on large binary stores: wall time and peak memory of all its processes.

A synthetic clustered store (a few Gaussian clusters per class in a random low-dimensional subspace plus
noise, so that AUCs are neither 0.5 nor 1) is written with the library's own write_store in a temporary
folder (deleted afterwards), and `medsearch eval` runs on it as a user runs it: the CLI in a subprocess.
Memory is polled every POLL seconds over the whole process tree (eval's worker processes included): the
sum of resident sets (RSS, counts pages shared between processes once per process) and of proportional
sets (PSS, shared pages split between them).

    nice -n 10 .venv/bin/python benchmarks/bench_eval_scale.py --rows 200000        # the issue's measurement
    .venv/bin/python benchmarks/bench_eval_scale.py --rows 10000 --compare-exact    # AUCs equal to --exact's

--compare-exact runs eval twice, by default and with --exact, and prints both AUCs per method: below the
approximation limits they must be identical.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsearch.storage.schema import EMBEDDED  # noqa: E402
from medsearch.storage.store import ModelData, StoreData, write_store  # noqa: E402

POLL = 0.5


def clustered(n: int, dim: int, seed: int = 0, latent: int = 16, clusters: int = 3):
    """Binary labels (35 % positive); each class a mixture of ``clusters`` Gaussians in a ``latent``-dim
    subspace, mapped to ``dim`` dimensions and buried in isotropic noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int64)
    centres = rng.normal(0, 0.3, (2, clusters, latent))
    mixing = rng.normal(0, 1, (latent, dim)).astype(np.float32) / np.sqrt(latent)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):
        part = slice(start, min(n, start + 20_000))
        m = part.stop - part.start
        z = centres[y[part], rng.integers(0, clusters, m)] + rng.normal(0, 1.0, (m, latent))
        X[part] = z.astype(np.float32) @ mixing + rng.normal(0, 1.0, (m, dim)).astype(np.float32)
    return X, y


def write_synthetic(folder: Path, X, y) -> None:
    n = len(y)
    ids = [f"row{i:07d}" for i in range(n)]
    data = StoreData(ids, ids, y, ["negative", "positive"], "binary", attrs={"dataset_root": "synthetic"})
    preprocess = {"resize": 224, "crop": 224, "interpolation": "bicubic", "norm": "mean-std",
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    prov = {"encoder": "synthetic-clusters", "preprocess": preprocess, "dim": X.shape[1]}
    data.models["synthetic"] = ModelData(X, np.full(n, EMBEDDED, np.int8), [""] * n, {"provenance": json.dumps(prov)})
    folder.mkdir(parents=True, exist_ok=True)
    write_store(data, folder)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> tuple[int, int, int, int]:
    """(summed RSS, summed PSS, processes, PSS of ``root`` alone) in bytes over ``root`` and its descendants."""
    tree, todo, pids = _children(), [root], []
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += tree.get(pid, [])
    rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
    pss = [_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids]
    return rss * 1024, sum(pss) * 1024, len(pids), pss[0] * 1024


def shared_memory() -> int:
    """Bytes of tmpfs / shared memory in use on the machine (/proc/meminfo Shmem): joblib's memory-mapped
    arrays for worker processes live there, counted in a process's PSS only while it maps them."""
    return _kib("/proc/meminfo", "Shmem:") * 1024


def run_eval(store: Path, report: Path, extra=()) -> dict:
    """`medsearch eval --json` in a subprocess: wall seconds, peak memory, the JSON, stderr's lines and the
    memory timeline (samples every POLL seconds; each stderr line with the second it arrived)."""
    cmd = [sys.executable, "-m", "medsearch", "eval", "--index", str(store), "--json", "--report-dir", str(report),
           *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    samples: list[tuple] = []  # (seconds, rss, pss, processes, main process pss, shared memory added)
    shm0 = shared_memory()
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    out_file = open(report.parent / f"{report.name}.json", "w+")  # a pipe would fill up and block eval
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def pump():
        for line in proc.stderr:
            now = time.perf_counter() - t0
            lines.append((now, line.rstrip()))
            print(f"    | {now:6.0f} s {_gib(samples[-1][2]) if samples else 0:5.2f} GiB  {line.rstrip()}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while proc.poll() is None:
        samples.append((time.perf_counter() - t0, *tree_memory(proc.pid), shared_memory() - shm0))
        time.sleep(POLL)
    reader.join()
    out_file.seek(0)
    out = out_file.read()
    out_file.close()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"eval failed ({proc.returncode}):\n" + "\n".join(text for _, text in lines[-20:]))
    peak = {"rss": max(s[1] for s in samples), "pss": max(s[2] for s in samples),
            "procs": max(s[3] for s in samples), "shm": max(s[5] for s in samples)}
    return {"wall": wall, **peak, "result": json.loads(out), "stderr": [text for _, text in lines],
            "samples": samples, "lines": lines}


def _gib(n: float) -> float:
    return n / 2**30


def phases(run: dict) -> list[tuple]:
    """[(start s, end s, peak PSS sum, peak PSS of eval's own process, most processes, the stderr line that
    opened the phase)]: the samples split at each stderr line, so that a peak is placed after the line
    printed last before it."""
    marks = [(0.0, "(start-up: reading the store, splitting)")] + run["lines"]
    out = []
    for i, (start, text) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else run["wall"]
        inside = [s for s in run["samples"] if start <= s[0] < end]
        if inside:
            out.append((start, end, max(s[2] for s in inside), max(s[4] for s in inside),
                        max(s[3] for s in inside), text))
    return out


def print_timeline(run: dict, top: int = 12) -> None:
    """The phases with the highest peaks (in time order), and where the overall peak was."""
    table = phases(run)
    worst = sorted(sorted(table, key=lambda p: -p[2])[:top], key=lambda p: p[0])
    print(f"  memory timeline: the {len(worst)} phases (of {len(table)}) with the highest summed PSS")
    for start, end, pss, main_pss, procs, text in worst:
        print(f"    {start:6.0f}-{end:6.0f} s  sum {_gib(pss):5.2f} GiB  eval process {_gib(main_pss):5.2f} GiB  "
              f"{procs} proc  after: {text[:110]}")
    t, rss, pss, procs, main_pss, shm = max(run["samples"], key=lambda s: s[2])
    print(f"  peak at {t:.0f} s: PSS sum {_gib(pss):.2f} GiB (eval process {_gib(main_pss):.2f} GiB, "
          f"{procs} processes); machine's shared memory then {_gib(shm):+.2f} GiB against the start, at most "
          f"{_gib(run['shm']):+.2f} GiB")


def write_timeline(run: dict, path: Path) -> None:
    """Every sample and stderr line as CSV (see the header)."""
    with open(path, "w") as fh:
        fh.write("seconds,rss_bytes,pss_bytes,processes,eval_process_pss_bytes,shmem_added_bytes,stderr_line\n")
        events = [(s[0], f"{s[1]},{s[2]},{s[3]},{s[4]},{s[5]},") for s in run["samples"]]
        events += [(t, ",,,,," + json.dumps(text)) for t, text in run["lines"]]
        for t, rest in sorted(events, key=lambda e: e[0]):
            fh.write(f"{t:.2f},{rest}\n")


def summary(run: dict) -> str:
    methods = next(iter(run["result"]["models"].values()))["methods"]
    parts = [f"{m} {s['auc']:.4f}" + (" (approx)" if s.get("approximation") else "")
             for m, s in methods.items() if "auc" in s]
    gb = 2**30
    return (f"wall {run['wall']:.0f} s, peak RSS sum {run['rss'] / gb:.2f} GiB, peak PSS sum {run['pss'] / gb:.2f} "
            f"GiB, up to {run['procs']} processes; AUC " + ", ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--compare-exact", action="store_true", help="also run with --exact and compare the AUCs")
    ap.add_argument("--eval-args", default="", help="extra eval flags, space-separated")
    ap.add_argument("--timeline", type=Path, help="also write the default run's memory samples and stderr lines "
                                                  "to this CSV file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_scale-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        X, y = clustered(args.rows, args.dim)
        write_synthetic(tmp / "store", X, y)
        del X
        print(f"store {args.rows} x {args.dim} binary ({y.mean():.0%} positive) written in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        default = run_eval(tmp / "store", tmp / "report", args.eval_args.split())
        print(f"eval (default): {summary(default)}", flush=True)
        print_timeline(default)
        if args.timeline:
            write_timeline(default, args.timeline)
        for m, s in next(iter(default["result"]["models"].values()))["methods"].items():
            if s.get("approximation"):
                print(f"  {m}: {s['approximation']['what']} ({s['approximation']['rows']} of "
                      f"{s['approximation']['of']} rows)")
        if args.compare_exact:
            exact = run_eval(tmp / "store", tmp / "report-exact", ["--exact", *args.eval_args.split()])
            print(f"eval --exact:   {summary(exact)}", flush=True)
            print_timeline(exact)
            a, b = (next(iter(r["result"]["models"].values()))["methods"] for r in (default, exact))
            same = all(a[m].get("auc") == b[m].get("auc") for m in a)
            print(f"AUCs identical with and without --exact: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
