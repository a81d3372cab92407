"""Label-efficiency curves (`eval --train-fractions`): test AUC against the number of training labels.

For each seed and fraction, every method the evaluation scores (each head in --heads, whatever HEADS holds,
and the k-NN vote) is retrained on a subset of the training part (fractions.py: stratified, grouped by
patient where the store has groups, nested across the fractions of one seed) through the very path of the
main evaluation (scoring.score_model on a one-round problem), and scored on the same full test part. So a
point at fraction 1.0 is the main evaluation's AUC (taken from it, not refitted: the test suite checks that
a refit gives the same), and a new head is on the curves without code here.

Tuning on a small subset: the heads' grid search and the choice of k use min(--folds, the fewest patients
or rows any class has in the subset) folds, at least 2 (the per-class floor of fractions.py guarantees that
wherever the training part allows); with fewer the point is not computable and says why, as it does when
the fit itself refuses the subset (a MedsearchError, e.g. a --knn-k above the subset's rows; then each
method is retried alone, so that only the methods that refuse lose the point). No method gets a number it
did not earn: a point not computable has its reason in place of an AUC, and the band counts the seeds it
stands on. The band over seeds is the min-max of the computable seeds' AUCs (with few
seeds a percentile interval would be just that); the standard deviation is recorded beside it.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..errors import MedsearchError
from .eval_results import CurveBand, CurvePoint, LabelCurves, ModelEvaluation
from .fractions import MIN_UNITS, SubsetDrawer
from .progress import EvalLog
from .rounds import Problem, check_against_rounds
from .scoring import LABELS, model_heads, score_model

BAND = "min-max over the seeds whose point was computable (sd recorded beside it)"


class _QuietLog(EvalLog):
    """The log of one curve point: no progress lines, warnings kept (not printed) for the caller to pass on once."""

    def __init__(self):
        super().__init__(progress=False)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def label_curves(problem: Problem, key: str, X, full: ModelEvaluation | None = None) -> LabelCurves:
    """Model ``key``'s curves on the problem's single round (its training part subsampled, its test part whole).

    ``full``: the main evaluation of the model; a subset that is the whole training part takes its AUCs (the
    same fit: no refit), else every point is fitted here."""
    options, log = problem.options, problem.log
    (train, test), = problem.rounds
    grouped = problem.split_mode == "grouped" and problem.groups is not None
    drawer = SubsetDrawer(problem.y[train], problem.data.task, problem.groups_of(train) if grouped else None)
    fractions, n_seeds = options.train_fractions, options.fraction_seeds
    draws = [drawer.subsets(fractions, [options.seed, s]) for s in range(n_seeds)]
    methods = [*model_heads(options.heads, key), *(["knn"] if options.knn else [])]
    start = log.meter(f"{key} label curves", "points")
    advance = start(len(fractions) * n_seeds) if start else None
    scored: dict[bytes, tuple] = {}  # a subset already scored (e.g. fraction 1.0: one subset for every seed)
    if full is not None:
        scored[train.tobytes()] = (options.folds, {m: full.methods[m].auc for m in methods}, {})
    quiet, points, unit = _QuietLog(), [], "patient" if grouped else "row"
    for i, fraction in enumerate(fractions):
        t0 = time.perf_counter()
        for seed in range(n_seeds):
            subset = draws[seed][i]
            sub = train[subset.positions]
            if sub.tobytes() not in scored:
                scored[sub.tobytes()] = _score_point(problem, key, X, sub, test, subset, quiet, unit)
            folds, aucs, reason = scored[sub.tobytes()]
            points.append(CurvePoint(fraction=fraction, seed=seed, n_train=int(sub.size), n_units=subset.n_units,
                                     floor_rows=subset.floor_rows, folds=folds, auc=aucs, not_computable=reason))
            if advance:
                advance()
        log.line(_fraction_line(key, fraction, points[-n_seeds:], methods, time.perf_counter() - t0))
    for text in dict.fromkeys(quiet.warnings):
        if text not in log.warnings:
            log.warn(f"label curves: {text}")
    side = "label's positives and negatives" if problem.data.task == "multilabel" else "class"
    subsets = (f"{n_seeds} seeded subsets per fraction of the {train.size} training rows, stratified by class"
               f"{' (multilabel: label-powerset strata)' if problem.data.task == 'multilabel' else ''}, "
               f"{'grouped by patient, ' if grouped else ''}nested across the fractions of one seed, with at "
               f"least {MIN_UNITS} {unit}s of every {side}; tuning folds: min(--folds, fewest {unit}s of a class)")
    return LabelCurves(fractions=list(fractions), seeds=n_seeds, subsets=subsets, band=BAND,
                       test_rows=int(test.size), points=points, bands=bands(points, methods))


def _score_point(problem: Problem, key, X, sub, test, subset, log, unit) -> tuple:
    """(tuning folds or None, {method: test AUC}, {method: why it is not computable}) on one subset."""
    methods = [*model_heads(problem.options.heads, key), *(["knn"] if problem.options.knn else [])]
    folds = min(problem.options.folds, subset.fewest_per_class, subset.n_units)
    if folds < 2:
        why = (f"a class has {subset.fewest_per_class} {unit}(s) in the subset; tuning needs at least 2 folds, "
               "each holding every class")
        return None, {}, dict.fromkeys(methods, why)
    options = dataclasses.replace(problem.options, folds=folds, retrieval=False, save_head=None, n_boot=1, ks=(1,),
                                  progress=False)
    try:
        return folds, _aucs(problem, key, X, sub, test, options, log), {}
    except MedsearchError as exc:
        if len(methods) == 1:
            return folds, {}, {methods[0]: str(exc)}
    aucs, why = {}, {}  # one method refused the subset: find which, and keep the others' AUCs
    for m in methods:
        alone = dataclasses.replace(options, heads=(m,) if m != "knn" else (), knn=m == "knn")
        try:
            aucs.update(_aucs(problem, key, X, sub, test, alone, log))
        except MedsearchError as exc:
            why[m] = str(exc)
    return folds, aucs, why


def _aucs(problem: Problem, key, X, sub, test, options, log) -> dict:
    """Each method's test AUC after training on ``sub`` (score_model on a one-round problem)."""
    point = dataclasses.replace(problem, rounds=[(sub, test)], options=options, log=log)
    check_against_rounds(point.rounds, options)
    evaluation, _, _ = score_model(point, key, X)
    return {m: s.auc for m, s in evaluation.methods.items()}


def bands(points: list[CurvePoint], methods: list[str]) -> list[CurveBand]:
    """One band per fraction and method from the points (computable seeds with a defined AUC only)."""
    out = []
    for fraction in dict.fromkeys(p.fraction for p in points):
        at = [p for p in points if p.fraction == fraction]
        n_train = float(np.mean([p.n_train for p in at]))
        for m in methods:
            values = np.array([p.auc[m] for p in at if p.auc.get(m) is not None and np.isfinite(p.auc[m])])
            left_out = [f"seed {p.seed}: {p.not_computable.get(m, 'test AUC undefined')}" for p in at
                        if p.auc.get(m) is None or not np.isfinite(p.auc[m])]
            stats = (float(values.mean()), float(values.min()), float(values.max()), float(values.std())) \
                if values.size else (None,) * 4
            out.append(CurveBand(fraction, m, LABELS.get(m, m), n_train, *stats, int(values.size), left_out))
    return out


def _fraction_line(key, fraction, points, methods, seconds) -> str:
    """'m1 label curves 5% (31 labels, 5 seeds, 4 s): LR 0.812 [0.790, 0.835], ...'."""
    shown = []
    for band in bands(points, methods):
        shown.append(f"{band.label} " + ("not computable" if band.auc is None else
                                         f"{band.auc:.3f} [{band.lo:.3f}, {band.hi:.3f}]"))
    labels = np.mean([p.n_train for p in points])
    return (f"{key} label curves {percent(fraction)} ({labels:.0f} labels, {len(points)} seeds, {seconds:.0f} s): "
            + ", ".join(shown))


def percent(fraction: float) -> str:
    """0.01 -> '1%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:.4g}%"
