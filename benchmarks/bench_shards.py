"""Sharded exact index against the single index, on a synthetic store (default 300k x 256, float32).

Two figures, each a ratio against a baseline run the same way on the same machine:
1. query latency: single IndexIDMap2(Flat) vs N exact shards (faiss.IndexShards, threaded) — median of
   single-query searches, k=10, and of batches of 64 queries; answers checked equal.
2. memory: peak RSS of a fresh process that opens the index and searches it, index loaded whole vs shards
   memory-mapped (IO_FLAG_MMAP_IFC). Reported split into anonymous memory (what must fit in RAM) and
   file-backed pages (the page cache: shared, evicted under pressure, re-read from disk).

    nice -n 10 .venv/bin/python benchmarks/bench_shards.py [--rows 300000] [--dim 256] [--shards 2 4]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, numpy as np
sys.path.insert(0, {root!r})
from medsearch.storage.shard_files import open_index
from medsearch.storage.index_search import search
attrs, mmap, dim = json.loads({attrs!r}), {mmap}, {dim}
def status():
    out = {{}}
    for line in open('/proc/self/status'):
        key = line.split(':')[0]
        if key in ('VmHWM', 'VmRSS', 'RssAnon', 'RssFile'):
            out[key] = int(line.split()[1]) / 1024
    return out
before = status()
index = open_index({folder!r}, attrs, dim=dim, mmap=mmap)
q = np.random.default_rng(1).standard_normal((64, dim)).astype(np.float32)
for i in range(20):
    search(index, q[i:i + 1], 10)
search(index, q, 10)
after = status()
print(json.dumps({{"before": before, "after": after}}))
"""


def _median_ms(fn, repeats: int) -> float:
    fn()                                    # warm-up: thread pools, first-touch of pages
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def _latency(index, queries, search) -> dict:
    single = _median_ms(lambda: [search(index, queries[i:i + 1], 10) for i in range(32)], 5) / 32
    batch = _median_ms(lambda: search(index, queries, 10), 5)
    return {"single_query_ms": round(single, 3), "batch64_ms": round(batch, 2)}


def _memory(folder: Path, attrs: dict, dim: int, mmap: bool) -> dict:
    code = CHILD.format(root=str(ROOT), attrs=json.dumps(attrs), mmap=mmap, dim=dim, folder=str(folder))
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    b, a = out["before"], out["after"]
    return {"peak_rss_mib": round(a["VmHWM"] - b["VmRSS"], 1), "anon_mib": round(a["RssAnon"] - b["RssAnon"], 1),
            "file_mib": round(a["RssFile"] - b["RssFile"], 1)}


def main() -> None:
    from threadpoolctl import threadpool_info

    from medsearch.storage.index_build import build_tuned_index
    from medsearch.storage.index_search import search
    from medsearch.storage.index_shards import shard_bounds
    from medsearch.storage.shard_files import save_shards

    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    p.add_argument("--tmp", default=None, help="folder for the index files (default: a temporary folder)")
    args = p.parse_args()
    n, dim = args.rows, args.dim
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    queries = rng.standard_normal((64, dim)).astype(np.float32)
    ids = np.arange(n)
    folder = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=args.tmp))
    try:
        print(f"{n} x {dim} float32 ({x.nbytes / 2**20:.0f} MiB), flat; BLAS "
              f"{[i.get('internal_api') for i in threadpool_info()]}", flush=True)
        single = build_tuned_index(x, ids, "flat")[0]
        base = _latency(single, queries, search)
        want = search(single, queries, 10)[1]
        single_attrs = save_shards(folder, single, [0, n], "single")   # one 'shard' file: the whole index
        del single
        results = {"single": base | {"memory_whole": _memory(folder, single_attrs, dim, False)}}
        for shards in args.shards:
            bounds = shard_bounds(ids, n, shards)
            sharded = build_tuned_index(x, ids, "flat", bounds=bounds)[0]
            assert np.array_equal(search(sharded, queries, 10)[1], want)
            lat = _latency(sharded, queries, search)
            attrs = save_shards(folder, sharded, bounds, f"s{shards}")
            del sharded
            results[f"{shards}_shards"] = lat | {
                "single_query_ratio": round(lat["single_query_ms"] / base["single_query_ms"], 2),
                "batch64_ratio": round(lat["batch64_ms"] / base["batch64_ms"], 2),
                "memory_whole": _memory(folder, attrs, dim, False), "memory_mmap": _memory(folder, attrs, dim, True)}
        for name, r in results.items():
            print(name, json.dumps(r), flush=True)
        whole = results["single"]["memory_whole"]
        for name, r in results.items():
            if "memory_mmap" in r:
                m = r["memory_mmap"]
                print(f"{name}: mmap vs whole single index: peak RSS {m['peak_rss_mib'] / whole['peak_rss_mib']:.2f}x, "
                      f"anonymous {m['anon_mib'] / whole['anon_mib']:.2f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
