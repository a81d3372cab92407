"""Issue 14, "Must show": a store of millions of rows on one machine, measured in one run.

Synthetic clustered stores (CLUSTERS Gaussian clusters in a random LATENT-dim subspace of --dim dimensions plus
isotropic noise, binary labels, fixed seed) of each --sizes are written incrementally (write_store, then
commit_store every CHUNK rows, so 1M x 1280 float32 is never held twice), indexed with refresh_index (auto,
1 GiB budget) and measured: build time and peak RSS; commit cost per 1,000 added rows; cold `medsearch query`
wall time and peak RSS (a fresh process, the OS file cache warm); warm in-process search with the recorded
parameters and re-ranking through the store against exact search (faiss.knn over the stored vectors read a
slice at a time); recall@10 of both against exact on fresh queries from the same clusters, never added;
at sizes where auto is approximate, an in-process rebuild at target 0.99; index update in place after adding
1,000 rows against the full build; removing 1,000 rows (the query image's nearest), checked gone from the next
queries; then compact. One real store (a dataset of ../shared/data embedded with efficientnet-lite0, whose
provenance the synthetic stores borrow so that `medsearch query IMAGE` runs on them) gives query time and
recall of auto against exact. Ratios are against the first size, measured in the same process.

    .venv/bin/python benchmarks/bench_scale.py --sizes 2000,10000,20000 --queries 200      # a quick check
    nice -n 10 .venv/bin/python benchmarks/bench_scale.py                                 # the issue's run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402
from medsearch.ingest.compact import compact  # noqa: E402
from medsearch.ingest.model_index import refresh_index  # noqa: E402
from medsearch.storage.embeddings import RowsView  # noqa: E402
from medsearch.storage.faiss_index import (FLAT, build_tuned_index, load_index, normalize,  # noqa: E402
                                           resolve_index_type, search)
from medsearch.storage.index_update import index_row_ids  # noqa: E402
from medsearch.storage.schema import EMBEDDED, PENDING, REMOVED_REASON  # noqa: E402
from medsearch.storage.store import ModelData, StoreData, commit_store, read_store, write_store  # noqa: E402

MODEL = "efficientnet-lite0"
CLI = [sys.executable, "-m", "medsearch"]   # this checkout's code, as PYTHONPATH in cli_env() says
CHUNK = 50_000          # rows per commit while a store is written
ADD = 1_000             # rows per measured commit, and rows removed
COMMITS = 5
CLUSTERS, LATENT, SPREAD, NOISE = 2000, 64, 0.5, 0.1
BUDGET = 1 << 30
QUERY_IMAGE = REPO.parent / "shared/data/breast-busi/benign/benign (1).png"


@dataclass
class Opts:
    """What refresh_index reads of `medsearch index`'s options: auto, target 0.95, the --max-memory budget."""
    index_type: str = "auto"
    recall_target: float = 0.95
    max_memory: int = 0

    def __post_init__(self):
        self.max_memory = self.max_memory or BUDGET


class Clusters:
    """Rows drawn from fixed clusters; a block of rows depends only on (stream, start), so stores of any size
    are written block by block and fresh queries come from the same clusters."""

    def __init__(self, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.seed, self.dim = seed, dim
        self.basis = np.linalg.qr(rng.normal(size=(dim, LATENT)))[0].T.astype(np.float32)   # (LATENT, dim)
        self.centres = rng.normal(size=(CLUSTERS, LATENT)).astype(np.float32)
        self.label = (rng.random(CLUSTERS) < 0.35).astype(np.int64)

    def rows(self, start: int, stop: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, stream, start])
        c = rng.integers(0, CLUSTERS, stop - start)
        z = self.centres[c] + SPREAD * rng.standard_normal((c.size, LATENT), dtype=np.float32)
        x = z @ self.basis
        x += NOISE * rng.standard_normal(x.shape, dtype=np.float32)
        return x, self.label[c]


class Peak:
    """Peak resident memory of this process over a block (VmHWM, reset through /proc/self/clear_refs)."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return self

    def __exit__(self, *exc):
        with open("/proc/self/status") as f:
            self.gb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1e6


def now() -> float:
    return time.perf_counter()


# ------------------------------------------------------------------ stores

def append(data: StoreData, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Append rows as reconcile._append_rows does, their embeddings written; returns their row numbers."""
    n_old, k = len(data), len(y)
    new = np.arange(n_old, n_old + k)
    names = [f"s{i:08d}" for i in new]
    data.ids += names
    data.sources += [f"{s}.png" for s in names]
    data.labels = np.concatenate([data.labels, y])
    if data.removed is not None:
        data.removed = np.concatenate([data.removed, np.zeros(k, dtype=bool)])
    m = next(iter(data.models.values()))
    m.embedding.grow(k)
    m.embedding[new] = x
    m.state = np.concatenate([m.state, np.full(k, EMBEDDED, np.int8)])
    m.reason += [""] * k
    data.touch(new)
    return new


def write_synthetic(folder: Path, gen: Clusters, n: int, prov: str) -> StoreData:
    """A store of n rows written CHUNK rows per commit: write_store for the first, commit_store after."""
    x, y = gen.rows(0, min(n, CHUNK))
    names = [f"s{i:08d}" for i in range(len(y))]
    data = StoreData(names, [f"{s}.png" for s in names], y, ["negative", "positive"], "binary",
                     attrs={"dataset_root": "/nonexistent/synthetic", "layout": "folders", "manifest": ""})
    data.models[MODEL] = ModelData(x, np.full(len(y), EMBEDDED, np.int8), [""] * len(y), {"provenance": prov})
    write_store(data, folder)
    del x
    for start in range(CHUNK, n, CHUNK):
        x, y = gen.rows(start, min(n, start + CHUNK))
        append(data, x, y)
        del x
        commit_store(data, folder)
    return data


def segments(data: StoreData) -> int:
    return len(data.origin.manifest.segments)


# ------------------------------------------------------------------ searching

def exact_top(emb, rows: np.ndarray, q: np.ndarray, k: int = 10) -> tuple[np.ndarray, float, float]:
    """Exact top-k store rows of normalised queries ``q`` over ``rows``, the vectors read CHUNK rows at a time;
    returns (ids, seconds reading, seconds searching)."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    read = compute = 0.0
    for start in range(0, rows.size, CHUNK):
        t0 = now()
        part = rows[start:start + CHUNK]
        v = normalize(emb[part])
        t1 = now()
        s, i = faiss.knn(q, v, min(k, part.size), metric=faiss.METRIC_INNER_PRODUCT)
        s, i = np.hstack([best_s, s]), np.hstack([best_i, part[i]])
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
        read, compute = read + t1 - t0, compute + now() - t1
    return best_i, read, compute


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, truth)]))


def saved_index(folder: Path, m: ModelData):
    a = m.attrs
    return load_index(folder / a["index_file"], dim=m.dim, ntotal=int(a["index_ntotal"]),
                      fingerprint=a.get("index_fingerprint"), size=a.get("index_size"))


def auto_search(index, m: ModelData, q: np.ndarray, k: int = 10, params: dict | None = None) -> np.ndarray:
    """Search as `medsearch query` does: recorded parameters, re-ranking read from the store, removed rows
    still inside the index left out (query._hidden_rows)."""
    params = json.loads(m.attrs.get("index_search_params", "{}")) if params is None else params
    hidden = None
    if int(m.attrs.get("index_filtered", 0)):
        held, usable = index_row_ids(index), np.zeros(m.state.size, bool)
        usable[m.usable()] = True
        hidden = held[~usable[held]]
    return search(index, q, k, params=params, read_rows=lambda r: np.asarray(m.embedding[r]),
                  exclude_rows=hidden)[1]


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def cli_query(folder: Path, image: Path, k: int = 5, runs: int = 3) -> tuple[float, float, list[str]]:
    """Median wall seconds and peak RSS (GB) of `medsearch query IMAGE -k K --index DIR --json`, fresh
    processes; the neighbour ids of the last run."""
    walls, peaks, ids = [], [], []
    for _ in range(runs):
        res = subprocess.run(["/usr/bin/time", "-f", "@@ %e %M", *CLI, "query", str(image), "-k", str(k), "--index",
                              str(folder), "--json"], capture_output=True, text=True, env=cli_env())
        if res.returncode:
            raise SystemExit(f"medsearch query failed: {res.stderr[-800:]}")
        wall, kb = res.stderr.rsplit("@@", 1)[1].split()
        walls.append(float(wall))
        peaks.append(int(kb) / 1e6)
        out = json.loads(res.stdout)
        out = out[0] if isinstance(out, list) else out
        ids = [nb["id"] for nb in out["neighbours"]]
    return statistics.median(walls), max(peaks), ids


# ------------------------------------------------------------------ one size

def measure_size(n: int, gen: Clusters, args, prov: str) -> dict:
    folder = Path(args.work) / f"store-{n}"
    shutil.rmtree(folder, ignore_errors=True)
    r: dict = {"rows": n}
    log(f"{n}: writing")
    with Peak() as p:
        t0 = now()
        data = write_synthetic(folder, gen, n, prov)
        r["write_s"] = now() - t0
    r["write_peak_gb"] = p.gb
    m = data.models[MODEL]
    log(f"{n}: building the index ({resolve_index_type('auto', n, args.dim, BUDGET)})")
    with Peak() as p:
        t0 = now()
        refresh_index(folder, data, MODEL, Opts(), np.arange(n))
        commit_store(data, folder)
        r["build_s"] = now() - t0
    r["build_peak_gb"] = p.gb
    r["spec"], r["recorded_recall"] = m.attrs["index_spec"], m.attrs["index_recall_at_10"]
    r["params"] = m.attrs["index_search_params"]
    r.update(search_figures(folder, data, m, gen, args))
    r.update(additions(folder, data, m, gen))
    wall, peak, _ = cli_query(folder, QUERY_IMAGE)
    r["query_wall_s"], r["query_peak_gb"] = wall, peak
    r.update(removal(folder, data, m))
    del data, m
    r.update(compaction(folder))
    if not args.keep:
        shutil.rmtree(folder)
    return r


def search_figures(folder: Path, data: StoreData, m: ModelData, gen: Clusters, args) -> dict:
    """Warm search (auto, loaded once) against exact search, and recall@10 on fresh queries; at 0.99 too."""
    q = normalize(gen.rows(0, args.queries, stream=9)[0])
    truth, read_s, exact_s = exact_top(m.embedding, m.usable(), q)
    r = {"exact_read_s": read_s, "exact_s": exact_s}
    t0 = now()
    index = saved_index(folder, m)
    r["load_s"] = now() - t0
    t0 = now()
    found = auto_search(index, m, q)
    r["auto_s"], r["recall_95"] = now() - t0, recall(found, truth)
    del index
    if resolve_index_type("auto", len(data), m.dim, BUDGET) == FLAT:
        return r
    log(f"{len(data)}: building the index again at target 0.99 (in memory)")
    t0 = now()
    usable = m.usable()
    index, quality = build_tuned_index(RowsView(m.embedding, usable), usable, "auto", recall_target=0.99,
                                       max_memory=BUDGET)
    r["build99_s"], r["recorded_99"], r["params_99"] = now() - t0, quality.recall_at_10, quality.search_params
    t0 = now()
    found = auto_search(index, m, q, params=dict(quality.search_params))
    r["auto99_s"], r["recall_99"] = now() - t0, recall(found, truth)
    return r


def additions(folder: Path, data: StoreData, m: ModelData, gen: Clusters) -> dict:
    """COMMITS commits of ADD new rows each, every one followed by the index update in place."""
    commits, merges, updates, outcomes = [], [], [], []
    for i in range(COMMITS):
        x, y = gen.rows(len(data), len(data) + ADD, stream=1)
        before = segments(data)
        t0 = now()
        new = append(data, x, y)
        commit_store(data, folder)
        (merges if segments(data) <= before else commits).append(now() - t0)
        t0 = now()
        outcomes.append(refresh_index(folder, data, MODEL, Opts(), new))
        commit_store(data, folder)
        updates.append(now() - t0)
    return {"commit_s": statistics.median(commits) if commits else float("nan"), "merge_s": merges,
            "update_s": statistics.median(updates), "update_outcomes": sorted(set(outcomes))}


def removal(folder: Path, data: StoreData, m: ModelData) -> dict:
    """Remove the query image's ADD nearest rows as reconcile._remove_gone_rows does, then check that neither
    `medsearch query` nor a search with the removed rows' own vectors returns any of them."""
    _, _, near = cli_query(folder, QUERY_IMAGE, k=ADD, runs=1)
    row_of = {rid: r for r, rid in enumerate(data.ids)}
    rows = np.array(sorted(row_of[i] for i in near))
    own = normalize(m.embedding[rows])
    gone = data.is_removed().copy()
    gone[rows] = True
    data.removed = gone
    data.touch(rows)
    m.state[rows] = PENDING
    m.embedding[rows] = 0
    for row in rows.tolist():
        m.reason[row] = REMOVED_REASON
    m.touch(rows)
    t0 = now()
    commit_store(data, folder)
    outcome = refresh_index(folder, data, MODEL, Opts(), np.empty(0, np.int64))
    commit_store(data, folder)
    seconds = now() - t0
    _, _, after = cli_query(folder, QUERY_IMAGE, k=5, runs=1)
    assert not set(after) & set(near), "a removed row came back in `medsearch query`"
    fresh = read_store(folder)
    fm = fresh.models[MODEL]
    found = auto_search(saved_index(folder, fm), fm, own)
    assert not np.isin(found, rows).any(), "a removed row came back in a search by its own vector"
    return {"remove_s": seconds, "remove_outcome": outcome, "removed_gone": True}


def compaction(folder: Path) -> dict:
    summary = compact(str(folder))
    data = read_store(folder)
    m = data.models[MODEL]
    current = m.index_is_current() and int(saved_index(folder, m).ntotal) == int(m.usable().size)
    wall, _, _ = cli_query(folder, QUERY_IMAGE, runs=1)
    return {"compact_s": summary.seconds, "compact_rows": (summary.rows_before, summary.rows_after),
            "compact_segments": (summary.segments_before, summary.segments_after),
            "compact_index": summary.indexes.get(MODEL), "index_current_after": current,
            "query_after_compact_s": wall}


# ------------------------------------------------------------------ the real store

def measure_real(args) -> tuple[dict, str]:
    """Index a real dataset with `medsearch index`, then query time and recall of auto (and HNSW32) against
    exact search, on a tenth of its rows held out of the index; returns the figures and the provenance."""
    folder = Path(args.work) / "real"
    shutil.rmtree(folder, ignore_errors=True)
    log(f"real: medsearch index {args.real}")
    t0 = now()
    res = subprocess.run([*CLI, "index", args.real, "--out", str(folder), "--model", MODEL, "--quiet", "--json"],
                         capture_output=True, text=True, env=cli_env())
    if res.returncode:
        raise SystemExit(f"medsearch index failed: {res.stderr[-800:]}")
    r: dict = {"dataset": args.real, "index_s": now() - t0}
    data = read_store(folder)
    m = data.models[MODEL]
    usable = m.usable()
    r.update(rows=int(usable.size), spec=m.attrs["index_spec"], recorded_recall=m.attrs["index_recall_at_10"])
    image = Path(data.attrs["dataset_root"]) / data.sources[int(usable[0])]
    r["query_wall_s"], r["query_peak_gb"], _ = cli_query(folder, image)
    rng = np.random.default_rng(0)
    held = np.sort(rng.choice(usable, size=max(10, usable.size // 10), replace=False))
    rest = np.setdiff1d(usable, held)
    q = normalize(m.embedding[held])
    truth, _, r["exact_s"] = exact_top(m.embedding, rest, q)
    for kind in ("auto", "HNSW32"):
        t0 = now()
        index, quality = build_tuned_index(RowsView(m.embedding, rest), rest, kind, max_memory=BUDGET)
        built = now() - t0
        t0 = now()
        found = search(index, q, 10, params=dict(quality.search_params),
                       read_rows=lambda rows: np.asarray(m.embedding[rows]))[1]
        r[kind] = {"spec": quality.spec, "build_s": built, "search_s": now() - t0, "recall": recall(found, truth),
                   "recorded": quality.recall_at_10, "params": quality.search_params}
    r["held_out"] = int(held.size)
    prov = m.attrs["provenance"]
    if not args.keep:
        shutil.rmtree(folder)
    return r, prov


# ------------------------------------------------------------------ report

def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


ROWS = [  # label, key, format, target
    ("write (incremental, 50k-row commits) s", "write_s", "{:.1f}", ""),
    ("  its peak RSS GB", "write_peak_gb", "{:.2f}", ""),
    ("index built (auto, 1 GiB)", "spec", "{}", ""),
    ("index build s (refresh_index)", "build_s", "{:.1f}", ""),
    ("  its peak RSS GB", "build_peak_gb", "{:.2f}", ""),
    ("commit of 1,000 rows s (median)", "commit_s", "{:.3f}", "last/first <= 1.5"),
    ("  commits that merged the tail s", "merge_s", "{}", ""),
    ("index update in place, 1,000 rows s", "update_s", "{:.2f}", ""),
    ("update / full build", "update_vs_build", "{:.3f}", ""),
    ("query CLI cold wall s (median of 3)", "query_wall_s", "{:.2f}", "last/first <= 1.5"),
    ("query CLI peak RSS GB", "query_peak_gb", "{:.2f}", "<= 2 at 1M"),
    ("exact search s (compute)", "exact_s", "{:.2f}", ""),
    ("exact: reading the vectors s", "exact_read_s", "{:.2f}", ""),
    ("index load s", "load_s", "{:.2f}", ""),
    ("auto search s (warm, re-ranked)", "auto_s", "{:.3f}", ""),
    ("speed-up exact/auto", "speedup", "{:.1f}", ">= 10 at 1M"),
    ("search params (0.95)", "params", "{}", ""),
    ("recall@10 recorded (0.95)", "recorded_recall", "{:.3f}", ""),
    ("recall@10 fresh queries (0.95)", "recall_95", "{:.3f}", ">= 0.95"),
    ("0.99: build s", "build99_s", "{:.1f}", ""),
    ("0.99: params", "params_99", "{}", ""),
    ("0.99: recall@10 recorded", "recorded_99", "{:.3f}", ""),
    ("0.99: recall@10 fresh queries", "recall_99", "{:.3f}", ""),
    ("0.99: search s", "auto99_s", "{:.3f}", ""),
    ("remove 1,000 rows: commit+index s", "remove_s", "{:.2f}", ""),
    ("  index outcome / gone from queries", "removed", "{}", "gone"),
    ("compact s", "compact_s", "{:.1f}", ""),
    ("  rows before -> after", "compact_rows", "{}", ""),
    ("  segments before -> after", "compact_segments", "{}", ""),
    ("  index after compact / current", "compacted_index", "{}", "current"),
    ("query CLI after compact s", "query_after_compact_s", "{:.2f}", ""),
]
RATIOS = ("write_s", "build_s", "commit_s", "update_s", "query_wall_s", "query_peak_gb", "exact_s", "auto_s")


def derived(r: dict) -> dict:
    r["speedup"] = r["exact_s"] / max(r["auto_s"], 1e-9)
    r["update_vs_build"] = r["update_s"] / max(r["build_s"], 1e-9)
    r["removed"] = f"{r['remove_outcome']} / {'gone' if r['removed_gone'] else 'BACK'}"
    r["compacted_index"] = f"{r['compact_index']} / {'current' if r['index_current_after'] else 'NOT current'}"
    r["compact_rows"] = "{} -> {}".format(*r["compact_rows"])
    r["compact_segments"] = "{} -> {}".format(*r["compact_segments"])
    r["merge_s"] = ", ".join(f"{s:.2f}" for s in r["merge_s"]) or "none"
    return r


def show(results: list[dict], real: dict) -> None:
    sizes = [f"{r['rows']:,}" for r in results]
    print(f"{'':40s}" + "".join(f"{s:>22s}" for s in sizes) + f"{'last/first':>12s}  target")
    for label, key, fmt, target in ROWS:
        cells = [fmt.format(r[key]) if key in r else "-" for r in results]
        ratio = ""
        if key in RATIOS:
            ratio = f"{results[-1][key] / max(results[0][key], 1e-9):.2f}x"
        print(f"{label:40s}" + "".join(f"{c[:21]:>22s}" for c in cells) + f"{ratio:>12s}  {target}")
    print(f"\nreal store: {real['dataset']}, {real['rows']} rows, `medsearch index` {real['index_s']:.0f} s, auto "
          f"= {real['spec']} (recorded recall@10 {real['recorded_recall']:.3f}); query CLI {real['query_wall_s']:.2f} s "
          f"wall, {real['query_peak_gb']:.2f} GB; {real['held_out']} rows held out as queries, exact "
          f"{real['exact_s']:.4f} s")
    for kind in ("auto", "HNSW32"):
        k = real[kind]
        print(f"  {kind:7s} {k['spec']:8s} build {k['build_s']:.2f} s, search {k['search_s']:.4f} s, recall@10 "
              f"{k['recall']:.3f} (recorded {k['recorded']:.3f}, params {k['params']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--work", default=None, help="folder for the stores (default: a new one under /tmp)")
    ap.add_argument("--real", default=str(REPO.parent / "shared/data/skin-isic2018"))
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--max-memory", type=int, default=1 << 30, help="auto's index budget in bytes (default 1 GiB)")
    args = ap.parse_args()
    global BUDGET
    BUDGET = args.max_memory
    if args.dim != 1280:
        raise SystemExit("--dim must be 1280: the stores carry efficientnet-lite0's provenance so that "
                         "`medsearch query` runs on them")
    own_work = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="bench_scale_", dir="/tmp")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(2)
    try:
        real, prov = measure_real(args)
        gen = Clusters(args.dim)
        results = []
        for n in [int(s) for s in args.sizes.split(",")]:
            results.append(derived(measure_size(n, gen, args, prov)))
            log(json.dumps(results[-1], default=str))
        show(results, real)
        print("\n" + json.dumps({"sizes": results, "real": real}, default=str))
    finally:
        if own_work and not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
