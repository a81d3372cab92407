"""How long the dvme head takes to train with its grid search, at ODIR's size: 6,392 training rows x 3 encoders
of 1,280 dimensions each, as `eval --heads dvme --model a+b+c` runs it (search_heads, 5 inner folds, the grid of
heads.NETWORK_HEADS, refit on every row), against the lr head on the same rows in the same process.

The embeddings are synthetic but shaped like the fused CNN embeddings of fusion.fuse (non-negative, each part
L2-normalised, low-rank class structure plus noise; one encoder more informative than the others), so the
networks train for a realistic number of epochs. ODIR's labels: multilabel, 8 labels.

    nice -n 10 .venv/bin/python benchmarks/bench_dvme.py [--rows 6392] [--dim 1280] [--encoders 3] [--jobs 2]
    nice -n 10 .venv/bin/python benchmarks/bench_dvme.py --store indexes/retina-odir \
        --models efficientnet-lite0,efficientnet-lite1,efficientnet-lite2

--store: the real fused embeddings of a store's models instead, every usable row as training rows (no test
part: CV AUC only).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch.evaluation.attention import attention_of  # noqa: E402
from medsearch.evaluation.fusion import fuse  # noqa: E402
from medsearch.evaluation.heads import fused_grid, get_head  # noqa: E402
from medsearch.evaluation.metrics import auc  # noqa: E402
from medsearch.evaluation.splits import cv_splits  # noqa: E402
from medsearch.solvers.grid_search import search_heads  # noqa: E402
from medsearch.storage.store import read_store  # noqa: E402


def embeddings(rows: int, dim: int, encoders: int, labels: int, seed: int = 0):
    """(X as fusion.fuse builds it, multilabel y): encoder i carries the labels at strength 1/(i+1)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((rows, labels)) < 0.15).astype(int)
    blocks = []
    for i in range(encoders):
        basis = rng.normal(size=(labels, dim))
        E = np.maximum(0.1 * y @ basis / (i + 1) + rng.normal(size=(rows, 32)) @ rng.normal(size=(32, dim)) * 0.5
                       + rng.normal(size=(rows, dim)), 0)
        blocks.append(E / np.linalg.norm(E, axis=1, keepdims=True))
    return (np.hstack(blocks) / np.sqrt(encoders)).astype(np.float32), y


def real_embeddings(store: str, models: list[str]):
    """(X as eval fuses it, labels, each part's width, task) over every row all the models embedded."""
    data = read_store(store)
    fused = fuse(data, "+".join(models))
    rows = fused.usable()
    return (np.asarray(fused.embedding)[rows], data.labels[rows], tuple(int(data.models[m].dim) for m in models),
            data.task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6392)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--encoders", type=int, default=3)
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--store", help="a store folder: its models' real fused embeddings, every row for training")
    parser.add_argument("--models", default="efficientnet-lite0,efficientnet-lite1,efficientnet-lite2")
    args = parser.parse_args()
    if args.store:
        X, y, dims, task = real_embeddings(args.store, args.models.split(","))
        X_test = y_test = None
        where = f"real embeddings of {args.store} ({task})"
    else:
        X, y = embeddings(args.rows + 1000, args.dim, args.encoders, args.labels)
        X_test, y_test, X, y = X[args.rows:], y[args.rows:], X[:args.rows], y[:args.rows]
        dims, task = (args.dim,) * args.encoders, "multilabel"
        where = f"synthetic, multilabel ({args.labels} labels)"
    folds = cv_splits(y, task, n_splits=5, seed=0)
    print(f"{len(y):,} training rows x {len(dims)} encoders x {dims} dims, {where}, 5 inner folds, {args.jobs} jobs")
    times = {}
    for name in ("lr", "dvme"):
        grid = fused_grid(name, get_head(name).paper_grid(), dims)
        t0 = time.perf_counter()
        fit = search_heads([name], X, y, task, folds=folds, grids={name: grid}, n_jobs=args.jobs)[name]
        times[name] = time.perf_counter() - t0
        line = (f"{name}: {times[name]:.1f} s for {fit.n_fits} fits ({len(grid.get('C', [])) or ''}"
                f"{'' if name == 'lr' else 'grid ' + str({k: v for k, v in grid.items() if k != 'block_dims'})}), "
                f"params {fit.params}, CV AUC {fit.cv_auc:.3f}")
        if X_test is not None:
            line += f", test AUC {auc(y_test, fit.estimator.predict_proba(X_test), task):.3f}"
        if name == "dvme" and X_test is not None:
            line += f", mean attention {np.round(attention_of(fit.estimator, X_test).mean(axis=0), 3).tolist()}"
        print(line, flush=True)
    print(f"dvme / lr time: {times['dvme'] / times['lr']:.2f}")


if __name__ == "__main__":
    main()
