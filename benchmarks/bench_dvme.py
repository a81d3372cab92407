"""How long the dvme head takes to train with its grid search, at ODIR's size: 6,392 training rows x 3 encoders
of 1,280 dimensions each, as `eval --heads dvme --model a+b+c` runs it (search_heads, 5 inner folds, the grid of
heads.NETWORK_HEADS, refit on every row), against the lr head on the same rows in the same process.

The embeddings are synthetic but shaped like the fused CNN embeddings of fusion.fuse (non-negative, each part
L2-normalised, low-rank class structure plus noise; one encoder more informative than the others), so the
networks train for a realistic number of epochs. ODIR's labels: multilabel, 8 labels.

    nice -n 10 .venv/bin/python benchmarks/bench_dvme.py [--rows 6392] [--dim 1280] [--encoders 3] [--jobs 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch.evaluation.attention import attention_of  # noqa: E402
from medsearch.evaluation.heads import fused_grid, get_head  # noqa: E402
from medsearch.evaluation.metrics import auc  # noqa: E402
from medsearch.evaluation.splits import cv_splits  # noqa: E402
from medsearch.solvers.grid_search import search_heads  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6392)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--encoders", type=int, default=3)
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    X, y = embeddings(args.rows + 1000, args.dim, args.encoders, args.labels)
    X_test, y_test, X, y = X[args.rows:], y[args.rows:], X[:args.rows], y[:args.rows]
    folds = cv_splits(y, "multilabel", n_splits=5, seed=0)
    dims = (args.dim,) * args.encoders
    print(f"{args.rows:,} training rows x {args.encoders} encoders x {args.dim} dims, multilabel "
          f"({args.labels} labels), 5 inner folds, {args.jobs} jobs")
    times = {}
    for name in ("lr", "dvme"):
        grid = fused_grid(name, get_head(name).paper_grid(), dims)
        t0 = time.perf_counter()
        fit = search_heads([name], X, y, "multilabel", folds=folds, grids={name: grid}, n_jobs=args.jobs)[name]
        times[name] = time.perf_counter() - t0
        scores = fit.estimator.predict_proba(X_test)
        line = (f"{name}: {times[name]:.1f} s for {fit.n_fits} fits ({len(grid.get('C', [])) or ''}"
                f"{'' if name == 'lr' else 'grid ' + str({k: v for k, v in grid.items() if k != 'block_dims'})}), "
                f"params {fit.params}, CV AUC {fit.cv_auc:.3f}, test AUC {auc(y_test, scores, 'multilabel'):.3f}")
        if name == "dvme":
            line += f", mean attention {np.round(attention_of(fit.estimator, X_test).mean(axis=0), 3).tolist()}"
        print(line, flush=True)
    print(f"dvme / lr time: {times['dvme'] / times['lr']:.2f}")


if __name__ == "__main__":
    main()
