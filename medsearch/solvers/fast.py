"""The fast backend of search_heads: what GridSearchCV computes (backend "reference"), with less work.

Same heads, grids, folds, AUC scorer and refit rule (best mean fold AUC, first in grid order on ties, NaN
folds make a setting's mean NaN). Each head goes through the solver routing.route picks for it, in the
cross-validation and in the final refit. The work is cut into units (units.py): one per (setting, fold)
for scikit-learn heads, one per (head, fold) for the primal solver (every C of a fold warm-starts the
next), one per fold for the heads on a precomputed kernel (one Gram matrix serves them all).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed, parallel_config
from threadpoolctl import threadpool_limits

from ..evaluation.heads import undefined_auc
from .headfit import HeadFit, best_setting, cv_table, grid_settings
from .memory import memory_workers
from .routing import DUAL, KERNEL, PRIMAL, refit_estimator, route, route_note
from .units import counting_fit, kernel_unit, make_folds, plain_unit, primal_unit

# Kernel units running at once hold at most this many bytes of n x n float64 matrices (a fold's Gram
# matrix, its squared distances and one RBF kernel: KERNEL_MATRICES of them per unit).
KERNEL_UNITS_BYTES = 3 * 2**30
KERNEL_MATRICES = 3
# Refits run side by side (one thread each) only while a float64 copy of the training rows is this small.
PARALLEL_REFIT_BYTES = 2**29


class _Unit(NamedTuple):
    kind: str        # "primal", "kernel" or "plain"
    key: object      # head name (primal), None (kernel), (head name, setting index) (plain)
    fold: int
    fn: object
    args: tuple


@dataclass
class _Tally:
    """One head's fold scores (settings x folds) and its summed seconds, unconverged fits and fits."""
    scores: np.ndarray
    seconds: float = 0.0
    not_converged: int = 0
    fits: int = 0

    def add(self, seconds: float, not_converged: int, fits: int) -> None:
        self.seconds += seconds
        self.not_converged += not_converged
        self.fits += fits


def _units(names, solvers, settings, grids, task, fold_data, max_iter) -> list[_Unit]:
    """Every unit of the search, biggest first for an even load across workers: a primal unit solves
    every C of its head on a fold."""
    n_folds = len(fold_data)
    units = [_Unit("primal", name, f, primal_unit, (name, settings[name], task, fold_data[f], max_iter))
             for name in sorted(n for n in names if solvers[n] == PRIMAL) for f in range(n_folds)]
    on_kernel = {name: solvers[name] for name in names if solvers[name] in (KERNEL, DUAL)}
    if on_kernel:
        units += [_Unit("kernel", None, f, kernel_unit, (on_kernel, task, grids, fold_data[f], max_iter))
                  for f in range(n_folds)]
    units += [_Unit("plain", (name, i), f, plain_unit, (name, task, settings[name][i], fold_data[f]))
              for name in names if solvers[name] not in (PRIMAL, KERNEL, DUAL)
              for f in range(n_folds) for i in range(len(settings[name]))]
    return units


def _record(unit: _Unit, outcome, tallies: dict[str, _Tally]) -> None:
    f = unit.fold
    if unit.kind == "kernel":
        for name, (values, seconds, fits, n_warn) in outcome.items():
            tallies[name].scores[:, f] = values
            tallies[name].add(seconds, n_warn, fits)
        return
    per_setting = outcome.items() if unit.kind == "primal" else [(unit.key[1], outcome)]
    name = unit.key if unit.kind == "primal" else unit.key[0]
    for i, (score, seconds, n_warn) in per_setting:
        tallies[name].scores[i, f] = score
        tallies[name].add(seconds, n_warn, 1)


def _refit(name, task, solver, setting, X, y, scale, max_iter):
    estimator = refit_estimator(name, task, solver, setting, scale=scale, max_iter=max_iter)
    t0 = time.perf_counter()
    n_warn = counting_fit(estimator, X, y)
    n_warn += not getattr(estimator[-1], "converged_", True)
    return estimator, time.perf_counter() - t0, n_warn


def _kernel_workers(units: list[_Unit], n_jobs: int) -> int:
    """Workers for the units: fewer when kernel units, which hold a few n x n float64 matrices each (kernels.py),
    would together pass KERNEL_UNITS_BYTES. The results do not depend on the number of workers."""
    sizes = [u.args[3].X_train.shape[0] for u in units if u.kind == "kernel"]
    if not sizes:
        return n_jobs
    per_unit = KERNEL_MATRICES * 8 * max(sizes) ** 2
    return max(1, min(n_jobs, KERNEL_UNITS_BYTES // per_unit))


def unit_bytes(unit: _Unit) -> int:
    """About the most memory one unit allocates while it runs, beyond its fold's arrays (which worker
    processes share through memory-mapped files): see the unit functions in units.py."""
    fold = unit.args[3] if unit.kind in ("primal", "kernel") else unit.args[-1]
    n_train, n_test = fold.X_train.shape[0], fold.X_test.shape[0]
    d = fold.X_train.shape[1] + 1
    if unit.kind == "primal":  # float64 augmented copies, the float32 one, a float64 copy of active rows, d x d
        return (n_train + n_test) * d * 8 + n_train * d * (4 + 8) + 4 * d * d * 8
    if unit.kind == "kernel":  # the fold's Gram matrices and kernels, float64 copies of the fold
        return KERNEL_MATRICES * 8 * n_train * (n_train + n_test) + (n_train + n_test) * d * 8
    return 2 * (n_train + n_test) * d * 8  # scikit-learn's own copies of the fold


def _workers(units: list[_Unit], n_jobs: int, processes: bool) -> tuple[int, str]:
    """(workers, why): at most n_jobs, fewer when the kernel units' matrices (_kernel_workers) or the units'
    working memory (memory.memory_workers) would not fit."""
    n_jobs = _kernel_workers(units, n_jobs)
    return memory_workers(n_jobs, max(unit_bytes(u) for u in units), processes)


def _run(units: list[_Unit], n_jobs: int, tallies, advance=None, log=None) -> None:
    """Run the units and record their outcomes. With primal units in worker processes: scipy's LAPACK
    wrappers (the primal solvers' Cholesky factorisations) and numpy's many small operations hold the
    GIL, so threads would serialise them (joblib memory-maps the fold arrays for the workers). Otherwise
    in threads (libsvm and BLAS release the GIL), which spare small searches the workers' start-up. BLAS
    gets one thread either way, since small matrix products slow down badly when oversubscribed: in the
    workers through joblib, in this process through the caller's threadpool_limits. ``log``, when given,
    gets one line saying how many workers run and why."""
    processes = any(unit.kind == "primal" for unit in units)
    n_jobs, why = _workers(units, n_jobs, processes)
    if log:
        log(why)
    workers = dict(backend="loky", inner_max_num_threads=1) if processes else dict(backend="threading")
    with parallel_config(**workers):
        outcomes = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(u.fn)(*u.args) for u in units)
    for unit, outcome in zip(units, outcomes):
        _record(unit, outcome, tallies)
        if advance:
            advance()


def release_workers() -> None:
    """Stop joblib's idle worker processes (kept for reuse otherwise, each holding an interpreter's memory and
    what its units left allocated): before refits on a large X, whose float64 copies need the room. The
    next search starts new ones."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True)


def _refits(pool, names, task, solvers, settings, chosen, X, y, scale, max_iter, n_jobs, advance, log) -> dict:
    """{name: (estimator, seconds, warnings)}: the chosen settings refitted on all of X, in threads; one at
    a time (BLAS on every worker) when X is large, since each refit holds float64 copies of X."""
    args = {name: (name, task, solvers[name], settings[name][chosen[name][0]], X, y, scale, max_iter)
            for name in names}
    if X.shape[0] * X.shape[1] * 8 <= PARALLEL_REFIT_BYTES or len(names) == 1:
        futures = {name: pool.submit(_refit, *args[name]) for name in names}
        return {name: _advanced(futures[name].result(), advance) for name in names}
    release_workers()
    out = {}
    with threadpool_limits(n_jobs):
        for name in names:
            if log:
                log(f"refitting {name} on {X.shape[0]:,} rows")
            out[name] = _advanced(_refit(*args[name]), advance)
    return out


def _advanced(outcome, advance):
    if advance:
        advance()
    return outcome


def search_fast(names, X, y, task: str, *, folds, grids: dict, scale: bool, n_jobs: int,
                linear_svc_max_iter: int | None, on_done=None, tune_rows=None, progress=None,
                log=None) -> dict[str, HeadFit]:
    """search_heads' fast backend; arguments as there, already checked."""
    fold_data = make_folds(X, y, folds, scale) if tune_rows is None else \
        make_folds(X[tune_rows], y[tune_rows], folds, scale)
    n_train, (n_rows, n_features) = max(tr.size for tr, _ in folds), X.shape
    solvers = {name: route(name, task, n_train, n_rows, n_features) for name in names}
    settings = {name: grid_settings(grids[name]) for name in names}
    tallies = {name: _Tally(np.full((len(settings[name]), len(folds)), np.nan)) for name in names}
    units = _units(names, solvers, settings, grids, task, fold_data, linear_svc_max_iter)
    n_jobs = max(1, int(n_jobs))
    advance = progress(len(units) + len(names)) if progress else None
    # threadpool_limits is process-wide (set per thread, its exits would undo each other): one for the
    # units run in threads and the refits
    with threadpool_limits(1), ThreadPoolExecutor(n_jobs) as pool:
        _run(units, n_jobs, tallies, advance, log)
        del units, fold_data  # the folds' standardised copies are not needed by the refits
        chosen = {}
        for name in names:
            chosen[name] = best_setting(tallies[name].scores)
            if chosen[name][0] < 0:
                raise undefined_auc(name)
        refits = _refits(pool, names, task, solvers, settings, chosen, X, y, scale, linear_svc_max_iter, n_jobs,
                         advance, log)
        results = {}
        for name in names:
            estimator, seconds, n_warn = refits[name]
            (best, means), tally = chosen[name], tallies[name]
            note = route_note(name, solvers[name], n_train, n_rows, n_features)
            results[name] = HeadFit(
                name=name, estimator=estimator, params=dict(settings[name][best]), cv_auc=float(means[best]),
                cv_results=cv_table(settings[name], means, tally.scores), seconds=tally.seconds + seconds,
                not_converged=tally.not_converged + n_warn, n_fits=tally.fits + 1, notes=[note] if note else [])
            if on_done:
                on_done(results[name])
    return results
