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
store's models a and b (see fusion), scored like any other.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..storage.atomic import atomic_write_with
from ..display import printable
from ..errors import MedsearchError
from ..results import to_jsonable
from ..options import check_whole, is_real, workers_for
from .fusion import fuse, is_fused
from ..solvers.grid_search import MAX_ITER_LIMIT, check_C, check_losses, head_grid, search_heads
from .heads import HEADS, SAVABLE_HEADS, get_head, head_scores
from .heads import save_head as write_head
from ..search.knn import KNN_K_GRID, WEIGHTS, KNNVoter, cv_select_k, vote_shares
from .metrics import (auc, bootstrap_aucs, ci_from_bootstrap, classification_report_dict, delta_from_bootstrap,
                       per_class_auc)
from .reference import anchor_for, reference_table
from .retrieval import count_relevant, retrieval_metrics
from .splits import cv_splits, holdout_split, official_split, stratification_labels
from ..storage.store import StoreData, provenance, read_store

DEFAULT_HEADS = ("lr", "linear-svc", "svc-linear", "svc-rbf")
SPLITS = ("auto", "official", "grouped", "paper")
LABELS = {"lr": "LR", "linear-svc": "LinearSVC", "svc-linear": "SVC-linear", "svc-rbf": "SVC-rbf",
          "knn": "k-NN vote", "retrieval": "retrieval"}
# LinearSVC's solver cap (head_search): Newton steps with more images than dimensions (a few dozen are
# used), libsvm passes over the data with fewer; scikit-learn's LinearSVC default.
LINEAR_SVC_MAX_ITER = 1000
MAX_N_BOOT = 1_000_000  # resamples; percentile CIs settle long before, and each one costs an AUC per method


def evaluate(index_dir, *, models=None, heads=DEFAULT_HEADS, knn: bool = True, retrieval: bool = True,
             split: str = "auto", test_size: float = 0.2, cv: int | None = None, folds: int = 5, seed: int = 0,
             ks=(1, 5, 10), knn_k: int | None = None, knn_weights: str = "similarity", n_boot: int = 1000,
             reference: str | None = None, report_dir=None, save_head: str | None = None, scale: bool = True,
             C=None, linear_svc_loss=None, n_jobs: int | None = None, linear_svc_max_iter: int | None = LINEAR_SVC_MAX_ITER,
             progress: bool = True) -> dict:
    """Evaluate the store in ``index_dir``; writes a report folder and returns the results (JSON-ready).

    Every option is checked before the store is read, and against the store's rows (folds, k, cut-offs
    larger than the training part) before anything is fitted; a bad value raises MedsearchError naming its
    command-line flag. ``n_jobs``: None for every usable core; more than the usable cores is clipped to them.
    """
    ks = tuple(ks) if isinstance(ks, (list, tuple, range)) else ks
    heads = _check_options(heads, split, cv, folds, ks, save_head, n_boot, knn_k, test_size=test_size, seed=seed,
                           knn_weights=knn_weights, C=C, linear_svc_loss=linear_svc_loss, n_jobs=n_jobs,
                           linear_svc_max_iter=linear_svc_max_iter)
    grids = {name: head_grid(name, C, linear_svc_loss) for name in heads}
    ref = _reference(reference)
    data = read_store(index_dir)
    keys = _model_keys(data, models, save_head)
    rows = _common_rows(data, keys)
    log = _Log(progress)
    y_all = data.labels[rows]
    groups = np.asarray(data.groups, dtype=object)[rows] if data.groups is not None else None
    split_info, rounds = _split(data, rows, y_all, groups, split, cv, test_size, seed, log)
    _check_against_rounds(rounds, folds=folds, ks=ks if retrieval else (), knn_k=knn_k if knn else None)

    results = {
        "format": "medsearch-eval/1", "medsearch_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "index_dir": str(index_dir),
        "store": {"task": data.task, "label_names": data.label_names, "n_rows": len(data), "n_evaluated": int(rows.size),
                  "has_groups": data.groups is not None, "has_official_split": data.splits is not None,
                  **{k: data.attrs.get(k) for k in ("dataset_root", "layout", "created", "updated")}},
        "config": {"models": keys, "heads": list(heads), "knn": knn, "retrieval": retrieval, "split": split,
                   "test_size": test_size, "cv": cv, "folds": folds, "seed": seed, "ks": list(ks), "knn_k": knn_k,
                   "knn_weights": knn_weights, "n_boot": n_boot, "scale": scale,
                   "grids": grids, "linear_svc_max_iter": linear_svc_max_iter, "n_jobs": workers_for(n_jobs)},
        "split": split_info, "notes": _notes(data, retrieval, cv, scale), "warnings": log.warnings,
        "reference": ref, "models": {},
    }
    curves = {}
    for key in keys:
        model = data.models[key]
        X = model.embedding[rows]
        outcome, curves[key] = _evaluate_model(
            key, X, y_all, groups, data, rounds, heads=heads, grids=grids, knn=knn, retrieval=retrieval, folds=folds,
            seed=seed, ks=ks, knn_k=knn_k, knn_weights=knn_weights, n_boot=n_boot, scale=scale,
            n_jobs=workers_for(n_jobs), max_iter=linear_svc_max_iter, split_mode=split_info["mode"], keep=save_head, log=log)
        fitted = outcome.pop("kept")
        outcome.update(provenance=provenance(model), dim=int(model.dim))
        results["models"][key] = outcome
        if save_head:
            results["models"][key]["saved_head"] = _save_head(
                index_dir, key, save_head, X, y_all, groups, data, rounds, grids, folds, seed, scale,
                workers_for(n_jobs), linear_svc_max_iter, split_info["mode"], fitted)

    from .report import write_report  # matplotlib is only needed once there is something to plot

    folder = Path(report_dir) if report_dir else Path(index_dir) / "reports" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    results["report_dir"] = str(folder)
    results = to_jsonable(results)
    write_report(results, curves, folder)
    return results


# ---- options, models, rows -----------------------------------------------------------------------


def _check_options(heads, split, cv, folds, ks, save_head, n_boot, knn_k, *, test_size=0.2, seed=0,
                   knn_weights="similarity", C=None, linear_svc_loss=None, n_jobs=None,
                   linear_svc_max_iter=LINEAR_SVC_MAX_ITER) -> tuple[str, ...]:
    """Check every option before any work; returns the heads as a tuple of unique names."""
    heads = heads.split(",") if isinstance(heads, str) else heads
    heads = tuple(dict.fromkeys(h.strip() for h in heads if h.strip()))
    for name in heads:
        get_head(name)  # unknown head -> MedsearchError naming the choices
    if split not in SPLITS:
        raise MedsearchError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if cv is not None:
        check_whole("--cv", cv, 2)
        if split == "official":
            raise MedsearchError("--cv cannot be combined with --split official (its test rows are fixed)")
    check_whole("--folds", folds, 2)
    if not is_real(test_size) or not 0.0 < test_size < 1.0:
        raise MedsearchError(f"--test-size must be a number between 0 and 1 (exclusive), got {test_size!r}")
    if not isinstance(ks, tuple) or not ks:
        raise MedsearchError(f"--ks needs a list of retrieval cut-offs (whole numbers of at least 1), got {ks!r}")
    for q in ks:
        check_whole("--ks", q, 1)
    if knn_k is not None:
        check_whole("--knn-k", knn_k, 1)
    check_whole("--n-boot", n_boot, 1, MAX_N_BOOT)
    check_whole("--seed", seed, 0, 2**32 - 1)
    if knn_weights not in WEIGHTS:
        raise MedsearchError(f"unknown --knn-weights {knn_weights!r}; use one of {', '.join(WEIGHTS)}")
    check_C(C)
    check_losses(linear_svc_loss)
    if linear_svc_max_iter is not None:
        check_whole("--max-iter", linear_svc_max_iter, 1, MAX_ITER_LIMIT)
    if n_jobs is not None:
        check_whole("--jobs", n_jobs, 1)
    if save_head and save_head not in SAVABLE_HEADS:
        raise MedsearchError(f"--save-head {save_head}: only {' and '.join(SAVABLE_HEADS)} heads can be saved")
    if save_head and save_head not in heads:
        raise MedsearchError(f"--save-head {save_head} needs {save_head} among the evaluated --heads")
    return heads


def _check_against_rounds(rounds, *, folds, ks, knn_k) -> None:
    """Options that the training parts must be large enough for, checked before anything is fitted."""
    n_train = min(train.size for train, _ in rounds)
    where = " in the smallest --cv round" if len(rounds) > 1 else ""
    if n_train < 2 * folds:
        raise MedsearchError(f"--folds {folds}: only {n_train} training rows{where}; {folds}-fold tuning needs at "
                             f"least {2 * folds}: lower --folds or index more images")
    if ks and max(ks) > n_train:
        raise MedsearchError(f"--ks {max(ks)}: retrieval at {max(ks)} needs that many training images, the training "
                             f"part has {n_train}{where}: lower the cut-offs")
    if knn_k is not None and knn_k > n_train:
        raise MedsearchError(f"--knn-k {knn_k}: more neighbours than the {n_train} training rows{where}; "
                             f"use at most {n_train}")


def _model_keys(data: StoreData, models, save_head=None) -> list[str]:
    """The models to evaluate; a fused one ('a+b', see fusion) is built in memory and added to ``data.models``."""
    if not models:
        data.model(next(iter(data.models), None))  # a store without models -> the store's own message
        return list(data.models)
    keys = []
    for key in dict.fromkeys(models):
        if is_fused(key):
            if save_head:
                raise MedsearchError(f"--save-head needs a stored model: `query` cannot embed an image with a fused "
                                     f"model ({key}); save the head of one of its parts instead")
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


class _Log:
    """Progress lines and warnings on stderr; warnings are also kept for the report."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.warnings: list[str] = []

    def line(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print(f"medsearch: warning: {text}", file=sys.stderr, flush=True)


# ---- split ---------------------------------------------------------------------------------------


def _split(data, rows, y, groups, split, cv, test_size, seed, log) -> tuple[dict, list]:
    """(split description for the report, [(train positions, test positions)] into ``rows``)."""
    task = data.task
    mode = split
    if split == "auto":
        mode = "official" if data.splits is not None and not cv else "grouped"
    if mode == "official":
        if data.splits is None:
            raise MedsearchError("--split official: this store has no official train/val/test split; "
                                 "use --split auto or grouped")
        rounds = [official_split(np.asarray(data.splits, dtype=object)[rows].astype(str))]
        description = "official split (train+val for training and tuning, test for testing)"
    else:
        use_groups = groups is not None and mode == "grouped"
        if groups is not None and mode == "paper":
            log.warn("--split paper ignores the store's patient groups: images of one patient can be on both "
                     "sides, which inflates every score; use --split grouped for an honest estimate")
        splitter_mode = "grouped" if mode == "grouped" else "paper"
        if cv:
            try:
                rounds = cv_splits(y, task, groups=groups if use_groups else None, n_splits=cv, seed=seed,
                                   mode=splitter_mode)
            except MedsearchError as exc:
                raise MedsearchError(f"--cv {cv}: {exc}") from None
            kind = f"{cv}-fold cross-validation (every row tested once, out-of-fold scores pooled)"
        else:
            _check_test_size(y, task, groups if use_groups else None, test_size)
            rounds = [holdout_split(y, task, groups=groups if use_groups else None, test_size=test_size, seed=seed,
                                    mode=splitter_mode)]
            kind = f"seeded stratified {round((1 - test_size) * 100)}/{round(test_size * 100)} holdout"
        if use_groups:
            description = f"{kind}, grouped by patient (no group on both sides)"
        elif mode == "paper":
            description = f"{kind} by image, as in the paper" + (" (groups ignored: leaks)" if groups is not None else "")
        else:
            description = f"{kind} by image (the store has no patient groups)"
        mode = "grouped" if use_groups else ("paper" if mode == "paper" else "stratified")
    info = {"mode": mode, "requested": split, "description": description, "cv": cv, "seed": seed,
            "grouped": mode == "grouped", "rounds": []}
    copies = 0
    for train, test in rounds:
        both = len(set(groups[train]) & set(groups[test])) if groups is not None else None
        dup = _test_rows_with_a_training_copy(data, rows[train], rows[test])
        copies += dup
        info["rounds"].append({"n_train": int(train.size), "n_test": int(test.size), "groups_in_both": both,
                               "test_rows_with_a_training_copy": dup,
                               "train_rows": rows[train].tolist(), "test_rows": rows[test].tolist()})
    if copies:
        log.warn(f"{copies} test image(s) have a byte-identical copy among the training images (see the duplicates "
                 "in the store's index_report.json): their scores are inflated; remove the copies from the dataset, "
                 "or give each copy the same patient id (--group-col) so they fall on one side")
    info["n_train"] = int(np.mean([r["n_train"] for r in info["rounds"]]))
    info["n_test"] = int(sum(r["n_test"] for r in info["rounds"]))
    return info, rounds


def _test_rows_with_a_training_copy(data, train_rows, test_rows) -> int:
    """Test rows whose image bytes (sha256 recorded by `index`) are also a training row's: leakage by duplicate."""
    if data.sha256 is None:
        return 0
    seen = {data.sha256[r] for r in train_rows} - {""}
    return sum(1 for r in test_rows if data.sha256[r] in seen)


def _check_test_size(y, task, groups, test_size) -> None:
    """A holdout of ``test_size`` must leave every class (stratum) room on both sides, or, grouped by patient,
    take 1/round(1/test_size) of at least two groups; else a one-line error naming --test-size."""
    n = y.shape[0]
    if groups is not None:
        n_splits, n_groups = round(1.0 / test_size), len(set(groups))
        if n_splits < 2:
            raise MedsearchError(f"--test-size {test_size}: a split grouped by patient tests 1/round(1/test-size) of "
                                 "the patients, at most half: use a --test-size of at most 0.5")
        if n_splits > n_groups:
            raise MedsearchError(f"--test-size {test_size}: a split grouped by patient would test 1/{n_splits} of "
                                 f"the {n_groups} patients: use a --test-size of at least {1 / n_groups:.3g}")
        return
    n_test = math.ceil(test_size * n)
    n_strata = np.unique(stratification_labels(y, task, min_count=2)).size
    if min(n_test, n - n_test) < n_strata:
        raise MedsearchError(f"--test-size {test_size} leaves {n - n_test} training and {n_test} test rows of {n}; a "
                             f"stratified split needs at least {n_strata} on each side (one per class): use a "
                             f"--test-size between {n_strata / n:.3g} and {1 - n_strata / n:.3g}")


def _notes(data, retrieval, cv, scale) -> list[str]:
    notes = []
    if retrieval and data.task == "multilabel":
        notes.append("retrieval relevance (multilabel): a retrieved image is relevant when it shares at least one "
                     "positive label with the query")
    if retrieval:
        notes.append("mAP@k is the standard (TREC) form: divided by min(k, relevant images in the gallery)")
    if cv:
        notes.append("cross-validated: AUC and CIs are computed on the pooled out-of-fold scores; SVM decision "
                     "values of different folds are pooled as they are")
    if not scale:
        notes.append("heads were fitted on raw embeddings (no standardisation), as in the paper")
    notes.append("SVM AUCs use decision_function scores; LR and k-NN use probabilities / vote shares")
    return notes


def _reference(name) -> dict | None:
    if not name:
        return None
    rows = reference_table(name)
    anchor = anchor_for(name)
    return {"name": rows[0]["dataset"], "requested": name, "anchor_note": anchor["note"] if anchor else None,
            "rows": rows}


# ---- one model -----------------------------------------------------------------------------------


def _check_training_part(y_train, task, label_names) -> None:
    if task == "multilabel":
        if not ((y_train != 0).any(axis=0) & (y_train == 0).any(axis=0)).any():
            raise MedsearchError("every label is constant in the training part; nothing can be learnt")
        return
    present = np.unique(y_train)
    if present.size < 2:
        raise MedsearchError(f"the training part holds only class {label_names[int(present[0])]!r}; "
                             "evaluation needs at least two classes: index images of another class")


def _inner_folds(y_train, g_train, task, folds, seed, split_mode):
    """Tuning folds on a training part (its size against --folds is checked up front: _check_against_rounds)."""
    try:
        return cv_splits(y_train, task, groups=g_train if split_mode == "grouped" else None, n_splits=folds,
                         seed=seed, mode="grouped" if split_mode == "grouped" else "paper")
    except MedsearchError as exc:
        raise MedsearchError(f"--folds {folds}: {exc}") from None


def _full_width(shares, classes, task, n_classes) -> np.ndarray:
    """k-NN vote shares as (n,) / (n, C) score arrays aligned with class indices 0..C-1."""
    if task == "multilabel":
        return shares
    out = np.zeros((shares.shape[0], n_classes))
    out[:, np.asarray(classes, dtype=int)] = shares
    return out[:, 1] if task == "binary" else out


def _evaluate_model(key, X, y, groups, data, rounds, *, heads, grids, knn, retrieval, folds, seed, ks, knn_k,
                    knn_weights, n_boot, scale, n_jobs, max_iter, split_mode, keep, log):
    task, names = data.task, data.label_names
    n_classes = len(names)
    scores = {m: [] for m in (*heads, *(["knn"] if knn else []))}
    details = {m: {"params": [], "cv_auc": [], "cv_results": [], "fit_seconds": 0.0, "not_converged": 0,
                   "n_fits": 0, "notes": []} for m in scores}
    neighbour_labels, n_relevant, retrieval_seconds, kept = [], [], 0.0, {}
    y_tests = []
    for r, (train, test) in enumerate(rounds):
        where = f" [fold {r + 1}/{len(rounds)}]" if len(rounds) > 1 else ""
        X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
        _check_training_part(y_train, task, names)
        inner = _inner_folds(y_train, groups[train] if groups is not None else None, task, folds, seed, split_mode)
        y_tests.append(y_test)

        def done(fit, X_test=X_test, y_test=y_test, where=where):
            s = head_scores(fit.estimator, X_test, task)
            scores[fit.name].append(s)
            d = details[fit.name]
            d["params"].append(fit.params)
            d["cv_auc"].append(fit.cv_auc)
            d["cv_results"].append(fit.cv_results)
            d["fit_seconds"] += fit.seconds
            d["not_converged"] += fit.not_converged
            d["n_fits"] += fit.n_fits
            d["notes"] += fit.notes
            if fit.name == keep and len(rounds) == 1:
                kept["fit"] = fit
            log.line(f"{key} {fit.name}: AUC {_auc_text(y_test, s, task)} (CV {fit.cv_auc:.3f}, "
                     f"{fit.seconds:.1f} s){where}")

        if heads:
            search_heads(heads, X_train, y_train, task, folds=inner, grids=grids, scale=scale, n_jobs=n_jobs,
                         linear_svc_max_iter=max_iter, on_done=done)
        if knn or retrieval:
            t0 = time.perf_counter()
            if knn_k is None:
                cap = min(tr.size for tr, _ in inner)
                grid = [k for k in KNN_K_GRID if k <= cap] or [1]
                best_k, k_scores = cv_select_k(X_train, y_train, task, inner, ks=grid, weights=knn_weights)
            else:
                best_k, k_scores = int(knn_k), {}
            voter = KNNVoter(k=max(best_k, *ks), weights=knn_weights).fit(X_train, y_train)
            sims, idx = voter.kneighbors(X_test)
        if knn:
            shares = vote_shares(sims[:, :best_k], idx[:, :best_k], voter.labels_, knn_weights, voter.classes_.size)
            s = _full_width(shares, voter.classes_, task, n_classes)
            scores["knn"].append(s)
            d = details["knn"]
            d["params"].append({"k": best_k, "weights": knn_weights})
            d["cv_auc"].append(k_scores.get(best_k))
            d["cv_results"].append([{"params": {"k": k}, "mean_auc": v} for k, v in k_scores.items()])
            d["fit_seconds"] += time.perf_counter() - t0
            log.line(f"{key} knn: AUC {_auc_text(y_test, s, task)} (k={best_k}, {time.perf_counter() - t0:.1f} s){where}")
        if retrieval:
            t1 = time.perf_counter()
            if idx.shape[1] < max(ks):
                raise MedsearchError(f"the training part has {idx.shape[1]} images; retrieval @{max(ks)} needs more: "
                                     "lower the ks")
            neighbour_labels.append(y_train[idx[:, :max(ks)]])
            n_relevant.append(count_relevant(y_test, y_train, task))
            retrieval_seconds += time.perf_counter() - t1

    y_test = np.concatenate(y_tests)
    curve_scores = {m: np.concatenate(parts) for m, parts in scores.items()}
    # one bootstrap for every method: the same resamples give each CI and each paired delta
    columns = bootstrap_aucs(y_test, curve_scores.values(), task, n_boot=n_boot, seed=seed) if curve_scores else None
    boots = {m: columns[:, j] for j, m in enumerate(curve_scores)}
    methods = {m: _method_metrics(m, y_test, s, task, names, boots[m], details[m], len(rounds))
               for m, s in curve_scores.items()}
    if retrieval:
        t1 = time.perf_counter()
        metrics = retrieval_metrics(y_test, np.concatenate(neighbour_labels), task, ks=ks,
                                    n_relevant=np.concatenate(n_relevant))
        methods["retrieval"] = {"method": "retrieval", "label": LABELS["retrieval"], "kind": "retrieval",
                                "metrics": metrics, "fit_seconds": retrieval_seconds + time.perf_counter() - t1}
        log.line(f"{key} retrieval: P@{max(ks)} {metrics[f'precision@{max(ks)}']:.3f}, "
                 f"mAP@{max(ks)} {metrics[f'map@{max(ks)}']:.3f}")
    best, deltas = _deltas(methods, curve_scores, boots, y_test, task)
    outcome = {"n_train": int(np.mean([tr.size for tr, _ in rounds])), "n_test": int(y_test.shape[0]),
               "methods": methods, "best": best, "deltas": deltas, "kept": kept.get("fit")}
    curves = {"y": y_test, "scores": curve_scores, "task": task, "label_names": names, "best": best}
    return outcome, curves


def _auc_text(y, s, task) -> str:
    value = auc(y, s, task)
    return "undefined" if math.isnan(value) else f"{value:.3f}"


def _method_metrics(m, y, s, task, names, boots, detail, n_rounds) -> dict:
    point, lo, hi = ci_from_bootstrap(auc(y, s, task), boots)
    threshold = HEADS[m].threshold if m in HEADS else 0.5
    report = classification_report_dict(y, s, task, threshold=threshold)
    per_class = per_class_auc(y, s, task)
    one = n_rounds == 1  # a single split: unwrap the per-round lists
    return {
        "method": m, "label": LABELS[m], "kind": "head" if m in HEADS else "knn",
        "auc": point, "auc_ci": [lo, hi], "accuracy": report["accuracy"], "precision": report["precision_macro"],
        "recall": report["recall_macro"], "f1": report["f1_macro"], "n_test": report["n"],
        "per_class_auc": {(names[c] if task != "binary" else names[1]): v for c, v in per_class.items()},
        "params": detail["params"][0] if one else detail["params"],
        "cv_auc": detail["cv_auc"][0] if one else detail["cv_auc"],
        "cv_results": detail["cv_results"][0] if one else detail["cv_results"],
        "fit_seconds": detail["fit_seconds"], "not_converged": detail["not_converged"], "n_fits": detail["n_fits"],
        "notes": sorted(set(detail["notes"])),
    }


def _deltas(methods, curve_scores, boots, y, task) -> tuple[str | None, dict]:
    """Best method by test AUC, and every other method's paired bootstrap AUC delta against it."""
    ranked = [m for m in curve_scores if methods[m]["auc"] is not None and not math.isnan(methods[m]["auc"])]
    if not ranked:
        return None, {}
    best = max(ranked, key=lambda m: methods[m]["auc"])
    deltas = {}
    for m in ranked:
        if m != best:
            point = methods[m]["auc"] - methods[best]["auc"]
            deltas[m] = {"vs": best, **delta_from_bootstrap(point, boots[m], boots[best])}
    return best, deltas


# ---- saving a head -------------------------------------------------------------------------------


def _save_head(index_dir, key, name, X, y, groups, data, rounds, grids, folds, seed, scale, n_jobs, max_iter,
               split_mode, fit) -> str:
    """Save head ``name`` as fitted on the training part (on all evaluated rows under --cv) for `query --head`."""
    train = rounds[0][0] if len(rounds) == 1 else np.arange(y.shape[0])
    if data.task != "multilabel" and np.unique(y[train]).size < len(data.label_names):
        raise MedsearchError(f"the training part lacks some of the {len(data.label_names)} classes, so a head "
                             "saved from it could not score them all; save it from a larger store")
    if fit is None:  # cross-validation: tune and fit once more on every evaluated row
        inner = _inner_folds(y[train], groups[train] if groups is not None else None, data.task, folds, seed,
                             split_mode)
        fit = search_heads([name], X[train], y[train], data.task, folds=inner, grids={name: grids[name]},
                           scale=scale, n_jobs=n_jobs, linear_svc_max_iter=max_iter)[name]
    folder = Path(index_dir) / "heads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}-{name}.npz"
    atomic_write_with(path, lambda tmp: write_head(tmp, fit.estimator, name=name, task=data.task,
                                                   classes=data.label_names, model_key=key,
                                                   encoder=provenance(data.models[key])))
    print(f"saved {name} head for {key} ({fit.params}) to {printable(str(path))}", file=sys.stderr, flush=True)
    return str(path)
