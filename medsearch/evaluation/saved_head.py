"""`eval --save-head`: the evaluated head written to INDEX/heads/ for `query --head`.

With one round the head is the one fitted on its training part; under --cv it is tuned and fitted once more
on every evaluated row, so the saved head has seen all the data it was scored on.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..display import printable
from ..errors import MedsearchError
from ..solvers.grid_search import search_heads
from ..storage.atomic import atomic_write_with
from ..storage.store import provenance
from .fusion import block_dims
from .heads import fused_grid, save_head
from .rounds import Problem, inner_folds


def save_evaluated_head(problem: Problem, index_dir, key: str, X: np.ndarray, fit=None) -> str:
    """Save the --save-head head of model ``key``; ``fit``: the head fitted on the single round's training
    part (None under --cv). Returns the file's path."""
    data, options, name, y = problem.data, problem.options, problem.options.save_head, problem.y
    rounds = problem.rounds
    train = rounds[0][0] if len(rounds) == 1 else np.arange(y.shape[0])
    if data.task != "multilabel" and np.unique(y[train]).size < len(data.label_names):
        raise MedsearchError(f"the training part lacks some of the {len(data.label_names)} classes, so a head "
                             "saved from it could not score them all; save it from a larger store")
    if fit is None:  # cross-validation: tune and fit once more on every evaluated row
        fit = search_heads([name], X[train], y[train], data.task, folds=inner_folds(problem, train),
                           grids={name: fused_grid(name, problem.grids[name], block_dims(data, key))},
                           scale=options.scale, n_jobs=options.workers,
                           linear_svc_max_iter=options.linear_svc_max_iter)[name]
    folder = Path(index_dir) / "heads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}-{name}.npz"
    atomic_write_with(path, lambda tmp: save_head(tmp, fit.estimator, name=name, task=data.task,
                                                  classes=data.label_names, model_key=key,
                                                  encoder=provenance(data.models[key])))
    print(f"saved {name} head for {key} ({fit.params}) to {printable(str(path))}", file=sys.stderr, flush=True)
    return str(path)
