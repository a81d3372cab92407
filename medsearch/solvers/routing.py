"""Which solver fits a head: decided here once, for the cross-validation units and the final refit alike.

    head         condition (n_train: largest training fold, n_rows: all rows, d: dimensions)   solver
    lr           always                                                                          sklearn
    linear-svc   n_train <= min(d, MAX_KERNEL_ROWS)                                              dual
    linear-svc   otherwise                                                                       primal
    svc-linear   binary or multilabel, n_train > min(d, MAX_KERNEL_ROWS)                         primal
    svc-linear   otherwise, n_rows <= MAX_KERNEL_ROWS                                            kernel
    svc-rbf      n_rows <= MAX_KERNEL_ROWS                                                       kernel
    svc-*        otherwise                                                                       sklearn
    mlp, dvme    always (network heads, evaluation.dvme)                                         sklearn

- sklearn: the head's own scikit-learn estimator, one fit per (setting, fold), as GridSearchCV runs it (the
  reference path; the network heads have no other).
- kernel: libsvm on a precomputed kernel (kernels.py), every setting of a fold from one Gram matrix.
- dual: LinearSVC's problem solved by libsvm on the same Gram matrix (dual.py). With no more images than
  dimensions the classes are (nearly) separable and SMO converges fast, where liblinear's coordinate
  descent needs many passes over the wide rows.
- primal: Newton's method in the primal (primal.py), every C and one-vs-rest problem of a fold in one
  unit. With more images than dimensions SMO slows down at large C and liblinear stops at its pass cap
  short of the optimum. Binary and multilabel SVC-linear is the hinge problem with a free bias
  (one-vs-rest), which this solver solves to the same optimum; multiclass SVC is one-vs-one inside
  libsvm and stays there.
"""
from __future__ import annotations

from sklearn.pipeline import Pipeline

from ..evaluation.heads import NETWORK_HEADS, get_head, gridsearch_params, scaled
from .dual import DualLinearSVC
from .kernels import KERNELS, KernelSVC
from .primal import PrimalLinearSVC, primal_linear_kernel_svc

SKLEARN, KERNEL, DUAL, PRIMAL = "sklearn", "kernel", "dual", "primal"
SOLVERS = (SKLEARN, KERNEL, DUAL, PRIMAL)
MAX_KERNEL_ROWS = 12_000  # a 12k x 12k float64 matrix is 1.2 GB; beyond that the native kernel is used


def route(name: str, task: str, n_train: int, n_rows: int, n_features: int) -> str:
    """The solver of head ``name`` (one of SOLVERS), by the table in this module's docstring."""
    if name in NETWORK_HEADS:
        return SKLEARN
    wide = n_train <= min(n_features, MAX_KERNEL_ROWS)
    if name == "linear-svc":
        return DUAL if wide else PRIMAL
    if name == "svc-linear" and task != "multiclass" and not wide:
        return PRIMAL
    if name in KERNELS and n_rows <= MAX_KERNEL_ROWS:
        return KERNEL
    return SKLEARN


def route_note(name: str, solver: str, n_train: int, n_rows: int, n_features: int) -> str | None:
    """The note a head's result carries when its solver is not the one the head is named for."""
    if name == "svc-linear" and solver == PRIMAL:
        return (f"{n_train} training rows > {n_features} dimensions: libsvm's problem (hinge, free bias) "
                "solved by Newton's method in the primal")
    if name in KERNELS and solver == SKLEARN:
        return f"{n_rows} training rows: too many for a precomputed kernel, fitted with the native kernel"
    return None


def refit_estimator(name: str, task: str, solver: str, setting: dict, *, scale: bool,
                    max_iter: int | None) -> Pipeline:
    """The unfitted pipeline that refits head ``name`` with ``setting`` (short names) through ``solver``.
    ``max_iter`` (None: LinearSVC's own) caps LinearSVC's passes or the primal solver's Newton steps."""
    if solver == PRIMAL and name == "svc-linear":
        cap = max_iter or get_head("linear-svc").build().max_iter
        return scaled(primal_linear_kernel_svc(C=setting["C"], max_iter=cap), scale)
    if solver in (DUAL, PRIMAL):
        params = {**get_head(name).build().get_params(), **setting, **({"max_iter": max_iter} if max_iter else {})}
        return scaled((DualLinearSVC if solver == DUAL else PrimalLinearSVC)(**params), scale)
    if solver == KERNEL:
        return scaled(KernelSVC(name=name, C=setting["C"], gamma=setting.get("gamma", "scale")), scale)
    return get_head(name).make(task, scale=scale).set_params(**gridsearch_params(setting, task))
