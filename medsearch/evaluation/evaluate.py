"""`medsearch eval --index DIR`: how good are a store's embeddings on its own images?

For each model in the store, on one split shared by all models and methods:
- the paper's heads (LR, LinearSVC, SVC linear/rbf) tuned by 5-fold CV AUC on the training part
  (grouped by patient where the store has groups) and scored on the test part;
- k-NN voting with k chosen on the same folds;
- retrieval: test images query the training images (precision@k, mAP@k, majority-vote acc@k);
- AUC with a seeded bootstrap CI, accuracy, macro precision/recall/F1, per-class AUC, and paired
  bootstrap AUC deltas of every method against the best one.
Embeddings are read from the store, never recomputed. ``cv=K`` replaces the single split by K outer
folds (each row tested once) and pools the out-of-fold scores. A model named 'a+b' is the fusion of the
store's models a and b (see fusion), scored like any other. On large training parts the heads are tuned (the
kernel SVCs also fitted) and k is chosen on stratified subsamples, each stated in the results and warned
about (approximation; --max-tuning-rows, --max-kernel-rows, --exact). --train-fractions adds each model's
label-efficiency curves: every method retrained on nested stratified subsets of the training part, over seeds,
scored on the same test part (label_curves).

This module is the driver: options (options), rows and rounds (rounds), one model's scores (scoring),
head saving (saved_head), the result (results) and the report folder (report).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import MedsearchError
from ..storage.store import StoreData, read_store
from .fusion import fuse, is_fused
from .heads import ALL_HEADS
from .across_models import across_models
from .eval_options import MAX_KERNEL_ROWS, MAX_TUNING_ROWS, EvalOptions
from .progress import EvalLog
from .reference import anchor_for, reference_table
from .label_curves import label_curves
from .eval_results import FORMAT, EvalConfig, EvalResult, Reference, StoreInfo
from .rounds import make_problem
from .saved_head import save_evaluated_head
from .scoring import check_block_heads, model_heads, score_model

__all__ = ["evaluate"]


def evaluate(index_dir, options: EvalOptions | None = None, **overrides) -> EvalResult:
    """Evaluate the store in ``index_dir``; writes a report folder and returns the results.

    ``options`` (default ``EvalOptions()``) with any of its fields replaced by ``overrides``, e.g.
    ``evaluate(store, heads=("lr",), n_boot=100)``. Every option is checked before the store is read, and
    against the store's rows (folds, k, cut-offs larger than the training part) before anything is fitted;
    a bad value raises MedsearchError naming its command-line flag.
    """
    options = dataclasses.replace(options or EvalOptions(), **overrides).checked()
    grids = options.grids()
    reference = _reference(options.reference)
    data = read_store(index_dir)
    keys = _model_keys(data, options.models)
    check_block_heads(options.heads, keys)  # before any model is scored, not after the first
    log = EvalLog(options.progress)
    rows, where_note = _where_rows(data, _common_rows(data, keys), options, log)
    problem, split = make_problem(data, rows, options, grids, log)
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    models, curves, label = {}, {}, {}
    for key in keys:
        X = RowsOf(data.models[key].embedding, rows)
        models[key], curves[key], fitted = score_model(problem, key, X)
        if options.save_head in model_heads(options.heads, key):  # dvme: the fused models' only
            models[key].saved_head = save_evaluated_head(problem, index_dir, key, X, fitted)
        if options.train_fractions:
            label[key] = label_curves(problem, key, X, models[key])

    from .report import write_report  # matplotlib is only needed once there is something to plot

    folder = Path(options.report_dir) if options.report_dir else \
        Path(index_dir) / "reports" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    result = EvalResult(format=FORMAT, medsearch_version=__version__, created=created, index_dir=str(index_dir),
                        store=_store_info(data, rows), config=_config(options, keys, grids, models), split=split,
                        notes=where_note + _notes(data, options, keys), warnings=log.warnings, reference=reference, models=models,
                        report_dir=str(folder), curves=label or None, across_models=across_models(models, curves))
    write_report(result, curves, folder)
    return result


class RowsOf:
    """A model's embeddings of the evaluated rows, read by position when indexed (``X[positions]``), so
    that no copy of every evaluated row is held beside the store's own."""

    def __init__(self, embedding, rows: np.ndarray):
        self.embedding, self.rows = embedding, rows
        self.shape = (rows.size, *embedding.shape[1:])

    def __getitem__(self, positions) -> np.ndarray:
        return np.asarray(self.embedding[self.rows[positions]])


def _model_keys(data: StoreData, models) -> list[str]:
    """The models to evaluate; a fused one ('a+b', see fusion) is built in memory and added to ``data.models``."""
    if not models:
        data.model(next(iter(data.models), None))  # a store without models -> the store's own message
        return list(data.models)
    keys = []
    for key in dict.fromkeys(models):
        if is_fused(key):
            data.models[key] = fuse(data, key)
            keys.append(key)
        else:
            keys.append(data.model(key)[0])
    return keys


def _common_rows(data: StoreData, keys) -> np.ndarray:
    """Rows embedded by every evaluated model, so that all models are scored on the same images."""
    usable = None
    for key in keys:
        rows = data.models[key].usable()
        usable = rows if usable is None else np.intersect1d(usable, rows)
    if usable.size < 10:
        raise MedsearchError(f"only {usable.size} rows have embeddings for {', '.join(keys)}; "
                             "evaluation needs at least 10: index more images first")
    return usable


def _where_rows(data: StoreData, rows: np.ndarray, options: EvalOptions, log) -> tuple[np.ndarray, list[str]]:
    """The rows ``--where`` keeps, before any split, and the note that says so; a warning when grouped rows have
    no PatientID (each is its own group: a split cannot keep such a patient's images together)."""
    from ..storage.header_filter import describe, parse_where, where_mask
    from ..storage.schema import NO_PATIENT_GROUP

    conditions = parse_where(options.where)
    notes = []
    if conditions:
        kept = rows[where_mask(data, conditions)[rows]]
        if kept.size < 10:
            raise MedsearchError(f"--where {describe(conditions)}: only {kept.size} of the {rows.size} embedded rows "
                                 "meet it; evaluation needs at least 10: loosen --where")
        notes.append(f"rows evaluated: only the {kept.size} of {rows.size} embedded rows whose DICOM header meets "
                     f"{describe(conditions)}, chosen before the split")
        rows = kept
    if data.groups is not None and options.split != "paper":
        lone = sum(1 for r in rows.tolist() if data.groups[r].startswith(NO_PATIENT_GROUP))
        if lone:
            log.warn(f"{lone} evaluated rows have no PatientID in their DICOM header: each is its own group, so "
                     "images of one such patient may fall on both sides of the split")
    return rows, notes


def _store_info(data: StoreData, rows: np.ndarray) -> StoreInfo:
    return StoreInfo(task=data.task, label_names=data.label_names, n_rows=len(data), n_evaluated=int(rows.size),
                     has_groups=data.groups is not None, has_official_split=data.splits is not None,
                     **{k: data.attrs.get(k) for k in ("dataset_root", "layout", "created", "updated")})


def _config(options: EvalOptions, keys: list[str], grids: dict, models: dict) -> EvalConfig:
    o = options
    limits = {"max_tuning_rows": o.max_tuning_rows, "max_kernel_rows": o.max_kernel_rows, "exact": o.exact}
    approximated = any(getattr(m, "approximation", None) for model in models.values() for m in model.methods.values())
    changed = limits != {"max_tuning_rows": MAX_TUNING_ROWS, "max_kernel_rows": MAX_KERNEL_ROWS, "exact": False}
    return EvalConfig(models=keys, heads=list(o.heads), knn=o.knn, retrieval=o.retrieval, split=o.split,
                      test_size=o.test_size, cv=o.cv, folds=o.folds, seed=o.seed, ks=list(o.ks), knn_k=o.knn_k,
                      knn_weights=o.knn_weights, n_boot=o.n_boot, scale=o.scale, grids=grids,
                      linear_svc_max_iter=o.linear_svc_max_iter, n_jobs=o.workers,
                      approximation_limits=limits if approximated or changed else None,
                      train_fractions=list(o.train_fractions) or None,
                      fraction_seeds=o.fraction_seeds if o.train_fractions else None,
                      where=list(o.where) or None)


def _notes(data: StoreData, options: EvalOptions, keys: list[str]) -> list[str]:
    notes = []
    weighing = [h for h in options.heads if ALL_HEADS[h].blocks]
    if weighing and not all(is_fused(key) for key in keys):
        notes.append(f"{', '.join(weighing)} weighs the encoders of a fused model: it ran on the fused models only")
    if len(keys) > 1:
        notes.append("deltas across models are paired: every model is scored on the same test rows with the same "
                     "bootstrap resamples")
    if options.retrieval and data.task == "multilabel":
        notes.append("retrieval relevance (multilabel): a retrieved image is relevant when it shares at least one "
                     "positive label with the query")
    if options.retrieval:
        notes.append("mAP@k is the standard (TREC) form: divided by min(k, relevant images in the gallery)")
    if options.cv:
        notes.append("cross-validated: AUC and CIs are computed on the pooled out-of-fold scores; SVM decision "
                     "values of different folds are pooled as they are")
    if not options.scale:
        notes.append("heads were fitted on raw embeddings (no standardisation), as in the paper")
    notes.append("SVM AUCs use decision_function scores; LR and k-NN use probabilities / vote shares")
    return notes


def _reference(name) -> Reference | None:
    if not name:
        return None
    rows = reference_table(name)
    anchor = anchor_for(name)
    return Reference(name=rows[0]["dataset"], requested=name, anchor_note=anchor["note"] if anchor else None,
                     rows=rows)
