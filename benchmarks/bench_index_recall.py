"""How approximate is an approximate index, and does the figure medsearch records hold for new queries?

For clustered synthetic vectors (so that neighbours mean something), each index type is built the way
`medsearch index` builds it (storage.faiss_index.build_tuned_index: a held-out sample tunes efSearch/nprobe to
recall@10 >= 0.95). Printed per type: the recall recorded in the store and its search parameter; the recall@10
measured on fresh queries that were never added (same clusters); and the search time of those queries against
exact search (IndexFlatIP) in the same process, as a ratio. The untuned FAISS default (efSearch 16 / nprobe 1)
is shown beside it for comparison.

    .venv/bin/python benchmarks/bench_index_recall.py [--rows 150000] [--dim 256] [--types 'HNSW32;IVF1024,Flat;IVF1024,PQ32']
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch.storage.faiss_index import build_tuned_index, faiss_inner, normalize  # noqa: E402


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 100), dim)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.8, size=(n, dim)).astype(np.float32)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.intersect1d(f, t).size / 10 for f, t in zip(found, truth)]))


def timed_search(index, queries, k=10):
    t0 = time.perf_counter()
    _, ids = index.search(queries, k)
    return time.perf_counter() - t0, ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--types", default="HNSW32;IVF1024,Flat;IVF1024,PQ32", help="FAISS factory strings, ';'-separated")
    args = ap.parse_args()
    types = args.types.split(";")
    both = clustered(args.rows + args.queries, args.dim)
    x, fresh = both[:args.rows], normalize(both[args.rows:])
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(normalize(x))
    exact_s, truth = timed_search(exact, fresh)
    print(f"{args.rows} x {args.dim} clustered, {args.queries} fresh queries; exact search {exact_s:.2f} s "
          f"({faiss.omp_get_max_threads()} threads)", flush=True)
    print(f"{'index':<16} {'build s':>8} {'recorded':>9} {'param':>14} {'fresh recall':>12} {'search s':>9} "
          f"{'x exact':>8} {'default param':>14} {'default recall':>14}")
    for kind in types:
        t0 = time.perf_counter()
        index, quality = build_tuned_index(x, np.arange(args.rows), kind)
        build_s = time.perf_counter() - t0
        search_s, found = timed_search(index, fresh)
        inner = faiss_inner(index)
        default = {"efSearch": 16} if isinstance(inner, faiss.IndexHNSW) else {"nprobe": 1}
        name, value = next(iter(quality.search_params.items()))
        setattr(inner.hnsw if name == "efSearch" else faiss.extract_index_ivf(inner), name, default[name])
        _, found_default = timed_search(index, fresh)
        print(f"{kind:<16} {build_s:>8.1f} {quality.recall_at_10:>9.3f} {name + ' ' + str(value):>14} "
              f"{recall_at_10(found, truth):>12.3f} {search_s:>9.3f} {exact_s / search_s:>8.1f} "
              f"{name + ' ' + str(default[name]):>14} {recall_at_10(found_default, truth):>14.3f}", flush=True)


if __name__ == "__main__":
    main()
