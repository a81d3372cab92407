"""LinearSVC on real embeddings with more images than dimensions: liblinear against linear_svc_primal.

For one label of a store (one-vs-rest), at each C of the paper's grid and both losses, in one process:
liblinear as the plain search runs it (LinearSVC(dual=True), scikit-learn's default cap of 1000 passes) and
our primal Newton solvers (linear_svc_primal, warm-started along C as eval runs them). Prints the seconds and
the primal objective each reaches on standardised embeddings (lower is better; both solve the same problem),
and, for the hinge, our certified duality gap.

    .venv/bin/python benchmarks/bench_linear_svc_solvers.py [--index indexes/retina-odir]
        [--model efficientnet-lite0] [--label 1] [--rows 0] [--cold]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch import linear_svc_primal  # noqa: E402
from medsearch.heads import C_GRID  # noqa: E402
from medsearch.linear_svc_primal import augmented, hinge_gap, solve_hinge, solve_squared_hinge  # noqa: E402
from medsearch.store import read_store  # noqa: E402


def objective(Xa, y, C, w, loss) -> float:
    slack = np.maximum(0.0, 1.0 - y * (Xa @ w))
    return 0.5 * float(w @ w) + C * float((slack if loss == "hinge" else slack ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default="indexes/retina-odir")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--label", type=int, default=1, help="label column (multilabel) or class index (one-vs-rest)")
    ap.add_argument("--rows", type=int, default=0, help="use the first N rows (0: all)")
    ap.add_argument("--cold", action="store_true",
                    help="instead: the hinge from w = 0 at C = 10 and 100, penalty starting at min(C, COLD_SIGMA) "
                         "(ours) against at C (the rule before), for --label")
    args = ap.parse_args()
    data = read_store(args.index)
    X = data.models[args.model].embedding
    labels = data.labels[:, args.label] if data.labels.ndim == 2 else (data.labels == args.label).astype(int)
    if args.rows:
        X, labels = X[:args.rows], labels[:args.rows]
    X = StandardScaler().fit_transform(X)
    y = np.where(labels > 0, 1.0, -1.0)
    Xa = augmented(X)
    print(f"# {args.index} {args.model}: {X.shape[0]} x {X.shape[1]}, label {data.label_names[args.label]!r} "
          f"({int((y > 0).sum())} positive), one BLAS thread, {time.strftime('%Y-%m-%d')}")
    if args.cold:
        return cold_starts(Xa, y)
    print(f"{'loss':<14} {'C':>6} {'liblinear s':>11} {'liblinear obj':>14} {'ours s':>7} {'ours obj':>12} {'gap/obj':>8} {'speed-up':>8}")
    with threadpool_limits(1):
        for loss in ("hinge", "squared_hinge"):
            start = None
            for C in C_GRID:
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ref = LinearSVC(loss=loss, C=C, dual=True, max_iter=1000, random_state=0).fit(X, labels)
                lib_s = time.perf_counter() - t
                w_ref = np.r_[ref.coef_[0], ref.intercept_[0]]
                t = time.perf_counter()
                if loss == "hinge":
                    w, alpha, ok = solve_hinge(Xa, y, C, w0=start and start[0], alpha0=start and start[1])
                    start = (w, alpha)
                    gap = hinge_gap(Xa, y, C, w, alpha)[1]
                else:
                    w, ok = solve_squared_hinge(Xa, y, C, w0=start)
                    start, gap = w, float("nan")
                ours_s = time.perf_counter() - t
                ours_obj = objective(Xa, y, C, w, loss)
                print(f"{loss:<14} {C:>6g} {lib_s:>11.1f} {objective(Xa, y, C, w_ref, loss):>14.6g} {ours_s:>7.2f} "
                      f"{ours_obj:>12.6g} {gap / ours_obj:>8.1e} {lib_s / ours_s:>8.1f}", flush=True)


def cold_starts(Xa, y) -> None:
    """A cold hinge solve (the eval's refit at the chosen C) under both penalty-start rules, same process."""
    print(f"{'C':>6} {'sigma0 = C s':>12} {'converged':>9} {'objective':>12} {'ours s':>7} {'converged':>9} "
          f"{'objective':>12} {'speed-up':>8}")
    with threadpool_limits(1):
        for C in (10.0, 100.0):
            row = []
            for cold_sigma in (float("inf"), linear_svc_primal.COLD_SIGMA):
                saved, linear_svc_primal.COLD_SIGMA = linear_svc_primal.COLD_SIGMA, cold_sigma
                try:
                    t = time.perf_counter()
                    w, alpha, ok = solve_hinge(Xa, y, C, max_newton=1000)
                    row.append((time.perf_counter() - t, ok, objective(Xa, y, C, w, "hinge")))
                finally:
                    linear_svc_primal.COLD_SIGMA = saved
            (t_old, ok_old, obj_old), (t_new, ok_new, obj_new) = row
            print(f"{C:>6g} {t_old:>12.1f} {str(ok_old):>9} {obj_old:>12.6g} {t_new:>7.1f} {str(ok_new):>9} "
                  f"{obj_new:>12.6g} {t_old / t_new:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
