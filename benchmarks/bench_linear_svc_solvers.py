"""LinearSVC on real embeddings with more images than dimensions: liblinear against linear_svc_primal.

For one label of a store (one-vs-rest), at each C of the paper's grid and both losses, in one process:
liblinear as the plain search runs it (LinearSVC(dual=True), scikit-learn's default cap of 1000 passes) and
our primal Newton solvers (linear_svc_primal, warm-started along C as eval runs them). Prints the seconds and
the primal objective each reaches on standardised embeddings (lower is better; both solve the same problem),
and, for the hinge, our certified duality gap. --svc-linear: SVC(kernel='linear')'s problem (hinge, free bias)
instead, libsvm's SMO on the precomputed Gram matrix (as eval ran it before; passes capped by --smo-cap) against
the primal solver with the bias scaled by FREE_BIAS_SCALING.

    .venv/bin/python benchmarks/bench_linear_svc_solvers.py [--index indexes/retina-odir]
        [--model efficientnet-lite0] [--label 1] [--rows 0] [--cold] [--svc-linear [--smo-cap 2000000]]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch.solvers import primal as linear_svc_primal  # noqa: E402
from medsearch.evaluation.heads import C_GRID  # noqa: E402
from medsearch.solvers.primal import (FREE_BIAS_SCALING, augmented, hinge_gap, solve_hinge,  # noqa: E402
                                        solve_squared_hinge)
from medsearch.storage.store import read_store  # noqa: E402


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
    ap.add_argument("--svc-linear", action="store_true",
                    help="instead: SVC(kernel='linear') by libsvm against the primal solver with a free bias, for --label")
    ap.add_argument("--smo-cap", type=int, default=2_000_000, help="libsvm's iteration cap in --svc-linear")
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
    if args.svc_linear:
        return svc_linear(X, y, args.smo_cap)
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


def free_bias_objective(X, y, C, w, b) -> float:
    return 0.5 * float(w @ w) + C * float(np.maximum(0.0, 1.0 - y * (X @ w + b)).sum())


def svc_linear(X, y, smo_cap: int) -> None:
    """SVC-linear along C: libsvm on the precomputed Gram matrix (each C from scratch, as libsvm runs) against
    the primal path (each C warm-starting the next, as eval runs it). Objectives of the free-bias problem."""
    print(f"{'C':>6} {'libsvm s':>9} {'converged':>9} {'libsvm obj':>12} {'ours s':>7} {'converged':>9} "
          f"{'ours obj':>12} {'gap/obj':>8} {'speed-up':>8}")
    Xa = augmented(X, FREE_BIAS_SCALING)
    with threadpool_limits(1):
        gram = X @ X.T
        start = (None, None)
        for C in C_GRID:
            t = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                svc = SVC(kernel="precomputed", C=C, max_iter=smo_cap).fit(gram, y)
            lib_s = time.perf_counter() - t
            lib_ok = not any("terminated early" in str(w.message) for w in caught)
            w_lib = X[svc.support_].T @ svc.dual_coef_[0]
            t = time.perf_counter()
            w, alpha, ok = solve_hinge(Xa, y, C, w0=start[0], alpha0=start[1], max_newton=1000)
            ours_s = time.perf_counter() - t
            start = (w, alpha)
            primal, gap = hinge_gap(Xa, y, C, w, alpha)
            ours_obj = free_bias_objective(X, y, C, w[:-1], w[-1] * FREE_BIAS_SCALING)
            print(f"{C:>6g} {lib_s:>9.1f} {str(lib_ok):>9} {free_bias_objective(X, y, C, w_lib, svc.intercept_[0]):>12.6g} "
                  f"{ours_s:>7.2f} {str(ok):>9} {ours_obj:>12.6g} {gap / primal:>8.1e} {lib_s / ours_s:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
