"""Paired AUC deltas across the models of one `eval`: does a fusion (concatenation, DVME) beat the best single
encoder, and by how much beyond chance?

Every model of one run is scored on the same test rows, and the bootstrap resamples depend only on the number of
those rows, --n-boot and --seed (metrics.bootstrap_aucs). One model's resampled AUCs therefore pair with another's
exactly as two methods of one model pair. The reference is the best method of any single-encoder model when the
run has single and fused models side by side (the question a fusion answers), else the best method of any model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..results import JsonResult
from .eval_results import Delta, ModelEvaluation
from .fusion import is_fused
from .metrics import delta_from_bootstrap


@dataclass
class AcrossModels(JsonResult):
    """Each method of each model ('model method') against the reference method ``vs`` ('model method')."""

    vs: str
    reference: str  # "best single-encoder method" or "best method of any model"
    auc: float      # the reference's test AUC
    deltas: dict[str, Delta]


def across_models(models: dict[str, ModelEvaluation], curves: dict[str, dict]) -> AcrossModels | None:
    """The cross-model deltas, or None for a run of one model. ``curves[key]["boots"]``: the model's resampled
    AUCs per method (scoring._ModelRun.pooled)."""
    if len(models) < 2:
        return None
    aucs = {(key, m): s.auc for key, model in models.items() for m, s in model.methods.items()
            if m in curves[key]["boots"] and s.auc is not None and not math.isnan(s.auc)}
    singles = [k for k in models if not is_fused(k)]
    mixed = bool(singles) and len(singles) < len(models)
    pool = [km for km in aucs if km[0] in singles] if mixed else list(aucs)
    if not pool:
        return None
    best = max(pool, key=lambda km: aucs[km])
    boots_best = np.asarray(curves[best[0]]["boots"][best[1]])
    deltas = {}
    for key, m in aucs:
        if (key, m) != best:
            point = aucs[key, m] - aucs[best]
            deltas[f"{key} {m}"] = Delta(vs=f"{best[0]} {best[1]}", **delta_from_bootstrap(
                point, np.asarray(curves[key]["boots"][m]), boots_best))
    return AcrossModels(vs=f"{best[0]} {best[1]}", reference="best single-encoder method" if mixed
                        else "best method of any model", auc=float(aucs[best]), deltas=deltas)
