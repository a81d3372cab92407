"""How approximate is an approximate index, and does the figure medsearch records hold for new queries?

For clustered synthetic vectors (so that neighbours mean something), each index type is built the way
`medsearch index` builds it (storage.faiss_index.build_tuned_index: held-out stored vectors choose the cheapest
search parameters -- efSearch, nprobe, and for PQ the depth of exact re-ranking from the stored vectors -- that
reach the recall@10 target). Printed per type and target: the structure built, its bytes per vector (estimate),
the recall recorded in the store and its search parameters; the recall@10 measured on fresh queries that were
never added (same clusters), searched with those parameters; the search time of all of them in one batch, and
the mean time of one query searched alone (as `medsearch query` does), each against exact search (IndexFlatIP)
in the same process, as a ratio (> 1: faster than exact). The untuned FAISS default (efSearch 16 / nprobe 1, no
re-ranking) is shown beside it.

A type is a factory string, 'auto', or 'auto:BYTES' (auto with that --max-memory, e.g. to force IVF-PQ).
Re-ranking reads the stored vectors from memory here; from a store on disk it reads rerank x k / 10 rows a query.

    .venv/bin/python benchmarks/bench_index_recall.py [--rows 150000] [--dim 256] [--targets 0.95,0.99]
        [--types 'auto;auto:40000000;HNSW32;IVF1024,PQ32']
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch.storage.faiss_index import (DEFAULT_MAX_INDEX_MEMORY, build_tuned_index, faiss_inner,  # noqa: E402
                                           index_memory_estimate, normalize, search)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 100), dim)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.8, size=(n, dim)).astype(np.float32)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.intersect1d(f, t).size / 10 for f, t in zip(found, truth)]))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def one_at_a_time(fn, queries) -> float:
    """Mean seconds per query, each searched alone."""
    t0 = time.perf_counter()
    for i in range(queries.shape[0]):
        fn(queries[i:i + 1])
    return (time.perf_counter() - t0) / max(1, queries.shape[0])


def default_params(index) -> dict:
    inner = faiss_inner(index)
    if isinstance(inner, faiss.IndexHNSW):
        return {"efSearch": 16}
    return {"nprobe": 1} if isinstance(inner, faiss.IndexIVF) else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--targets", default="0.95,0.99")
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--types", default="auto;auto:40000000;HNSW32;IVF1024,PQ32", help="';'-separated")
    args = ap.parse_args()
    both = clustered(args.rows + args.queries, args.dim)
    x, fresh = both[:args.rows], normalize(both[args.rows:])
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(normalize(x))
    exact_s, (_, truth) = timed(lambda: exact.search(fresh, 10))
    exact_one = one_at_a_time(lambda q: exact.search(q, 10), fresh[:args.single])
    print(f"{args.rows} x {args.dim} clustered, {args.queries} fresh queries; exact search {exact_s:.2f} s "
          f"({faiss.omp_get_max_threads()} threads)", flush=True)
    print(f"{'type':<16} {'target':>6} {'built':<20} {'B/vec':>6} {'build s':>8} {'recorded':>8} "
          f"{'params':<24} {'fresh':>6} {'batch s':>8} {'x exact':>7} {'1-query ms':>10} {'x exact':>7} "
          f"{'default recall':>14}")
    for kind in args.types.split(";"):
        for target in map(float, args.targets.split(",")):
            spec, _, memory = kind.partition(":")
            budget = int(memory) if memory else DEFAULT_MAX_INDEX_MEMORY
            build_s, (index, quality) = timed(lambda: build_tuned_index(
                x, np.arange(args.rows), spec, recall_target=target, max_memory=budget))
            params = quality.search_params
            search_s, (_, found) = timed(lambda: search(index, fresh, 10, params=params, read_rows=lambda r: x[r]))
            one = one_at_a_time(lambda q: search(index, q, 10, params=params, read_rows=lambda r: x[r]),
                                fresh[:args.single])
            _, plain = search(index, fresh, 10, params=default_params(index))
            per_vector = index_memory_estimate(quality.spec, args.rows, args.dim) / args.rows
            shown = ",".join(f"{k} {v}" for k, v in sorted(params.items())) or "-"
            print(f"{kind:<16} {target:>6.2f} {quality.spec:<20} {per_vector:>6.0f} {build_s:>8.1f} "
                  f"{quality.recall_at_10:>8.3f} {shown:<24} {recall_at_10(found, truth):>6.3f} {search_s:>8.3f} "
                  f"{exact_s / search_s:>7.1f} {one * 1e3:>10.2f} {exact_one / one:>7.1f} "
                  f"{recall_at_10(plain, truth):>14.3f}", flush=True)


if __name__ == "__main__":
    main()
