"""Cross-validated grid search of the paper's heads by mean fold AUC, behind one seam with two backends.

search_heads checks its arguments once and hands them to a backend (BACKENDS): "fast" (the default,
fast.py: each head through the solver routing.route picks, units shared across settings and folds) or
"reference" (reference.py: scikit-learn's plain GridSearchCV per head, heads.grid_search_cv). Both
return the same HeadFit per head: the same choice and, to the solvers' tolerance, the same AUCs.

Grids have one form: short names per head, e.g. {'C': [0.1, 1.0], 'loss': ['hinge']} (head_grid).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import MedsearchError
from ..evaluation.heads import get_head
from ..evaluation.metrics import check_task
from ..options import check_whole
from .fast import search_fast
from .headfit import HeadFit
from .reference import search_reference

__all__ = ["BACKENDS", "HeadFit", "MAX_ITER_LIMIT", "check_C", "check_losses", "head_grid", "search_heads"]

# Largest linear_svc_max_iter (--max-iter) accepted: libsvm takes max_iter x rows iterations as a C int
# (dual.smo_pass_cap clamps it there), so up to this cap, with at most 2 x MAX_KERNEL_ROWS rows on the
# dual route, the number of passes asked for is the number libsvm is given.
MAX_ITER_LIMIT = 50_000
BACKENDS = {"fast": search_fast, "reference": search_reference}


def check_C(C) -> list[float] | None:
    """The C values as floats (None: the paper's grid); each must be a finite positive number."""
    if C is None:
        return None
    values = [C] if isinstance(C, (str, bytes)) or not hasattr(C, "__iter__") else list(C)
    out = []
    for c in values:
        try:
            number = float(c) if not isinstance(c, (bool, str, bytes)) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise MedsearchError(f"--C values must be finite positive numbers, got {c!r}")
        out.append(number)
    if not out:
        raise MedsearchError("--C needs at least one value (finite positive numbers, e.g. 0.1,1,10,100)")
    return out


def check_losses(linear_svc_loss) -> list[str] | None:
    """LinearSVC's losses to search, unique, in the order given (None or empty: both)."""
    if not linear_svc_loss:
        return None
    losses = [linear_svc_loss] if isinstance(linear_svc_loss, str) else list(linear_svc_loss)
    known = get_head("linear-svc").extra_grid["loss"]
    unknown = [loss for loss in losses if loss not in known]
    if unknown:
        raise MedsearchError(f"unknown --linear-svc-loss {unknown[0]!r}; use hinge and/or squared_hinge")
    return list(dict.fromkeys(losses))


def head_grid(name: str, C=None, linear_svc_loss=None) -> dict:
    """Short-name grid of a head (the paper's), with the C values (and LinearSVC's losses) replaced when given."""
    grid = get_head(name).paper_grid()
    C = check_C(C)
    if C is not None and "C" in grid:  # the network heads (mlp, dvme) have no C
        grid["C"] = C
    losses = check_losses(linear_svc_loss)
    if name == "linear-svc" and losses:
        grid["loss"] = losses
    return grid



def search_heads(names, X, y, task: str, *, folds, grids: dict | None = None, scale: bool = True,
                 n_jobs: int = 1, linear_svc_max_iter: int | None = None, on_done=None,
                 backend: str = "fast", tune_rows=None, progress=None, log=None) -> dict[str, HeadFit]:
    """Grid-search each head in ``names`` by mean fold AUC and refit the best setting on all of X.

    ``grids``: {head: short-name grid} (default: the paper's, see head_grid). ``on_done(HeadFit)`` is
    called as each head finishes. ``backend``: a key of BACKENDS. ``tune_rows`` (fast backend): positions
    of X the search runs on, ``folds`` then indexing into X[tune_rows]; the refit still uses all of X.
    ``progress(total)`` (fast backend): returns a callable called once per unit of work done, ``total``
    times in all. ``log(text)`` (fast backend) gets a line saying how many workers run and why (the free
    memory can lower their number). Returns {name: HeadFit} in the order of ``names``.
    """
    check_task(task)
    if linear_svc_max_iter is not None:
        check_whole("--max-iter", linear_svc_max_iter, 1, MAX_ITER_LIMIT)
    if backend not in BACKENDS:
        raise MedsearchError(f"unknown search backend {backend!r}; choose from {', '.join(BACKENDS)}")
    names = list(dict.fromkeys(names))
    grids = {name: (grids or {}).get(name) or head_grid(name) for name in names}
    for grid in grids.values():
        check_C(grid.get("C"))
    extra = {}
    if tune_rows is not None or progress is not None or log is not None:
        if backend != "fast":
            raise MedsearchError(f"tuning on a subsample, progress and log need the fast search backend, not "
                                 f"{backend!r}")
        extra = dict(tune_rows=None if tune_rows is None else np.asarray(tune_rows, dtype=np.int64), progress=progress,
                     log=log)
    return BACKENDS[backend](names, np.asarray(X), np.asarray(y), task, folds=list(folds), grids=grids, scale=scale,
                             n_jobs=n_jobs, linear_svc_max_iter=linear_svc_max_iter, on_done=on_done, **extra)
