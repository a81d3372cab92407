"""One model's scores on the evaluation's rounds: the heads, the k-NN vote and retrieval.

Each round tunes the heads (and k) on folds of its training part and scores its test part. The test
scores of all rounds are pooled; one seeded bootstrap over the pooled rows then gives every method's AUC
CI and every paired AUC delta against the best method.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MedsearchError
from ..search.knn import KNN_K_GRID, KNNVoter, cv_select_k, vote_shares
from ..solvers.grid_search import search_heads
from ..storage.store import provenance
from .approximation import is_kernel_head, record, stratified_subsample, warning_text
from .attention import attention_of, attention_summary
from .fusion import block_dims, is_fused, parts
from .heads import ALL_HEADS, NETWORK_HEADS, fused_grid, get_head, head_scores
from .knn_tuning import choose_k
from .metrics import auc, bootstrap_aucs, ci_from_bootstrap, classification_report_dict, delta_from_bootstrap, \
    per_class_auc
from .eval_results import Delta, MethodScores, ModelEvaluation, RetrievalScores
from .retrieval import count_relevant, retrieval_metrics
from .rounds import Problem, check_training_part, inner_folds

if TYPE_CHECKING:
    from ..solvers.grid_search import HeadFit

LABELS = {"lr": "LR", "linear-svc": "LinearSVC", "svc-linear": "SVC-linear", "svc-rbf": "SVC-rbf",
          "mlp": "MLP", "dvme": "DVME", "knn": "k-NN vote", "retrieval": "retrieval"}


def check_block_heads(heads, keys) -> None:
    """Refuse a head that weighs encoders (dvme) when no evaluated model is a fusion of several. Beside single
    models it runs on the fused ones only (model_heads), so that all are compared in one run."""
    weighing = [name for name in heads if get_head(name).blocks]
    if weighing and not any(is_fused(key) for key in keys):
        singles = f"{', '.join(map(repr, keys))} {'is a single model' if len(keys) == 1 else 'are single models'}"
        raise MedsearchError(f"head {weighing[0]!r} weighs the encoders of a fused model, and {singles}: add a "
                             f"fusion (--model a+b), beside the single models to compare them in one run")


def model_heads(heads, key: str) -> tuple[str, ...]:
    """The heads that apply to model ``key``: one that weighs encoders (dvme) only to a fused model."""
    return tuple(name for name in heads if is_fused(key) or not get_head(name).blocks)


def score_model(problem: Problem, key: str, X: np.ndarray) -> tuple[ModelEvaluation, dict, HeadFit | None]:
    """(the model's scores, its pooled test labels and scores for the ROC plots, the --save-head head as
    fitted on the training part when there is a single round, else None)."""
    run = _ModelRun(problem, key, X)
    for r, (train, test) in enumerate(problem.rounds):
        run.score_round(r, train, test)
    evaluation, curves = run.pooled()
    return evaluation, curves, run.kept


@dataclass
class _Tuning:
    """A method's tuning, one entry per round, and its costs summed over the rounds."""

    params: list = field(default_factory=list)
    cv_auc: list = field(default_factory=list)
    cv_results: list = field(default_factory=list)
    fit_seconds: float = 0.0
    not_converged: int = 0
    n_fits: int = 0
    notes: list[str] = field(default_factory=list)

    def add_fit(self, fit: HeadFit) -> None:
        self.params.append(fit.params)
        self.cv_auc.append(fit.cv_auc)
        self.cv_results.append(fit.cv_results)
        self.fit_seconds += fit.seconds
        self.not_converged += fit.not_converged
        self.n_fits += fit.n_fits
        self.notes += fit.notes


class _ModelRun:
    """Collects one model's test scores round by round, then pools them into a ModelEvaluation."""

    def __init__(self, problem: Problem, key: str, X: np.ndarray):
        self.problem, self.options, self.key, self.X = problem, problem.options, key, X
        self.task, self.names = problem.data.task, problem.data.label_names
        self.heads = model_heads(self.options.heads, key)
        methods = (*self.heads, *(["knn"] if self.options.knn else []))
        self.scores: dict[str, list] = {m: [] for m in methods}
        self.tuning = {m: _Tuning() for m in methods}
        self.y_tests: list = []
        self.neighbour_labels: list = []
        self.n_relevant: list = []
        self.retrieval_seconds = 0.0
        self.kept: HeadFit | None = None
        self.approximations: dict[str, dict] = {}
        self.attention: dict[str, list] = {m: [] for m in self.heads if get_head(m).blocks}
        self.grids = {**problem.grids, **{m: fused_grid(m, problem.grids[m], block_dims(problem.data, key))
                                          for m in self.heads if m in NETWORK_HEADS}}

    def score_round(self, r: int, train, test) -> None:
        n_rounds = len(self.problem.rounds)
        where = f" [fold {r + 1}/{n_rounds}]" if n_rounds > 1 else ""
        y = self.problem.y
        X_train, y_train, X_test, y_test = self.X[train], y[train], self.X[test], y[test]
        check_training_part(y_train, self.task, self.names)
        inner = inner_folds(self.problem, train)
        self.y_tests.append(y_test)
        if self.heads:
            self._heads(X_train, y_train, X_test, y_test, train, inner, where)
        if self.options.knn or self.options.retrieval:
            self._neighbours(X_train, y_train, X_test, y_test, inner, where)

    def _approximate(self, methods, entry: dict) -> None:
        """Record (and warn once about) an approximation of ``methods``."""
        for m in methods:
            if m not in self.approximations:
                self.approximations[m] = entry
                self.problem.log.warn(f"{self.key} " + warning_text(m, entry))

    def _head_groups(self, X_train, y_train, train, inner) -> list[tuple]:
        """[(heads, X, y, folds, tune_rows)]: the kernel SVCs on a subsample when the training part is above
        --max-kernel-rows, the other heads tuned on a subsample when above --max-tuning-rows (approximation)."""
        options, task, n = self.options, self.task, y_train.shape[0]
        kernel = [h for h in self.heads if is_kernel_head(h, task)] \
            if not options.exact and n > options.max_kernel_rows else []
        tuned = [h for h in self.heads if h not in kernel]
        groups = []
        if tuned and not options.exact and n > options.max_tuning_rows:
            sub = stratified_subsample(y_train, task, options.max_tuning_rows, options.seed)
            self._approximate(tuned, record("tuning", sub.size, n, "--max-tuning-rows"))
            groups.append((tuned, X_train, y_train, inner_folds(self.problem, train[sub]), sub))
        elif tuned:
            groups.append((tuned, X_train, y_train, inner, None))
        if kernel:
            sub = stratified_subsample(y_train, task, options.max_kernel_rows, options.seed)
            self._approximate(kernel, record("kernel", sub.size, n, "--max-kernel-rows"))
            groups.append((kernel, X_train[sub], y_train[sub], inner_folds(self.problem, train[sub]), None))
        return groups

    def _heads(self, X_train, y_train, X_test, y_test, train, inner, where) -> None:
        options, one_round = self.options, len(self.problem.rounds) == 1

        def done(fit: HeadFit) -> None:
            s = head_scores(fit.estimator, X_test, self.task)
            self.scores[fit.name].append(s)
            self.tuning[fit.name].add_fit(fit)
            if fit.name == options.save_head and one_round:
                self.kept = fit
            fit.params.pop("block_dims", None)  # the fused model's part widths, not a tuned setting
            weighed = ""
            if fit.name in self.attention:
                weights = attention_of(fit.estimator, X_test)
                self.attention[fit.name].append(weights)
                weighed = ", attention " + ", ".join(f"{p} {w:.2f}" for p, w in zip(parts(self.key), weights.mean(0)))
            self.problem.log.line(f"{self.key} {fit.name}: AUC {_auc_text(y_test, s, self.task)} "
                                  f"(CV {fit.cv_auc:.3f}, {fit.seconds:.1f} s{weighed}){where}")

        for names, X, y, folds, tune_rows in self._head_groups(X_train, y_train, train, inner):
            label = f"{self.key} {','.join(names)}{where}"
            meter = self.problem.log.meter(f"{label}: grid search and refit")
            search_heads(names, X, y, self.task, folds=folds, grids=self.grids, scale=options.scale,
                         n_jobs=options.workers, linear_svc_max_iter=options.linear_svc_max_iter, on_done=done,
                         tune_rows=tune_rows, progress=meter,
                         log=lambda text, label=label: self.problem.log.line(f"{label}: {text}"))

    def _neighbours(self, X_train, y_train, X_test, y_test, inner, where) -> None:
        """The k-NN vote (k chosen on the tuning folds unless --knn-k) and the retrieval neighbour lists."""
        options, t0 = self.options, time.perf_counter()
        if options.knn_k is None:
            cap = min(tr.size for tr, _ in inner)
            grid = [k for k in KNN_K_GRID if k <= cap] or [1]
            queries = None
            if not options.exact and y_train.shape[0] > options.max_tuning_rows:
                queries = stratified_subsample(y_train, self.task, options.max_tuning_rows, options.seed)
                if options.knn:
                    self._approximate(["knn"], record("knn", queries.size, y_train.shape[0], "--max-tuning-rows"))
            meter = self.problem.log.meter(f"{self.key} knn{where}: choosing k", "folds")
            best_k, k_scores = choose_k(X_train, y_train, self.task, inner, grid, options.knn_weights, queries, meter,
                                       select=cv_select_k)
        else:
            best_k, k_scores = int(options.knn_k), {}
        voter = KNNVoter(k=max(best_k, *options.ks), weights=options.knn_weights).fit(X_train, y_train)
        if X_train.shape[0] > options.max_tuning_rows:  # one long exact search: say what it is doing
            self.problem.log.line(f"{self.key} knn{where}: searching {X_test.shape[0]:,} test rows among "
                                  f"{X_train.shape[0]:,} training rows")
        sims, idx = voter.kneighbors(X_test)
        if options.knn:
            shares = vote_shares(sims[:, :best_k], idx[:, :best_k], voter.labels_, options.knn_weights,
                                 voter.classes_.size)
            s = _full_width(shares, voter.classes_, self.task, len(self.names))
            self.scores["knn"].append(s)
            tuning = self.tuning["knn"]
            tuning.params.append({"k": best_k, "weights": options.knn_weights})
            tuning.cv_auc.append(k_scores.get(best_k))
            tuning.cv_results.append([{"params": {"k": k}, "mean_auc": v} for k, v in k_scores.items()])
            tuning.fit_seconds += time.perf_counter() - t0
            self.problem.log.line(f"{self.key} knn: AUC {_auc_text(y_test, s, self.task)} (k={best_k}, "
                                  f"{time.perf_counter() - t0:.1f} s){where}")
        if options.retrieval:
            t1 = time.perf_counter()
            if idx.shape[1] < max(options.ks):
                raise MedsearchError(f"the training part has {idx.shape[1]} images; retrieval @{max(options.ks)} "
                                     "needs more: lower the ks")
            self.neighbour_labels.append(y_train[idx[:, :max(options.ks)]])
            self.n_relevant.append(count_relevant(y_test, y_train, self.task))
            self.retrieval_seconds += time.perf_counter() - t1

    def pooled(self) -> tuple[ModelEvaluation, dict]:
        """The pooled scores of every method, the best one and the deltas; and the curves for the ROC plots."""
        options, task = self.options, self.task
        y_test = np.concatenate(self.y_tests)
        curve_scores = {m: np.concatenate(parts) for m, parts in self.scores.items()}
        # one bootstrap for every method: the same resamples give each CI and each paired delta
        meter = self.problem.log.meter(f"{self.key} bootstrap ({options.n_boot} resamples)", "batches")
        columns = bootstrap_aucs(y_test, curve_scores.values(), task, n_boot=options.n_boot,
                                 seed=options.seed, progress=meter) if curve_scores else None
        boots = {m: columns[:, j] for j, m in enumerate(curve_scores)}
        n_rounds = len(self.problem.rounds)
        methods = {m: _method_scores(m, y_test, s, task, self.names, boots[m], self.tuning[m], n_rounds)
                   for m, s in curve_scores.items()}
        for m, entry in self.approximations.items():
            methods[m].approximation = entry
        for m, parts_weights in self.attention.items():  # MethodScores.attention (eval_results) shows it
            methods[m].attention = attention_summary(np.concatenate(parts_weights), y_test, task, self.names,
                                                     parts(self.key))
        if options.retrieval:
            methods["retrieval"] = self._retrieval_scores(y_test)
        best, deltas = _deltas(methods, curve_scores, boots)
        model = self.problem.data.models[self.key]
        evaluation = ModelEvaluation(n_train=int(np.mean([tr.size for tr, _ in self.problem.rounds])),
                                     n_test=int(y_test.shape[0]), methods=methods, best=best, deltas=deltas,
                                     provenance=provenance(model), dim=int(model.dim))
        curves = {"y": y_test, "scores": curve_scores, "task": task, "label_names": self.names, "best": best,
                  "boots": boots}  # the resampled AUCs, paired across models by evaluate's across_models
        return evaluation, curves

    def _retrieval_scores(self, y_test) -> RetrievalScores:
        t1, ks = time.perf_counter(), self.options.ks
        metrics = retrieval_metrics(y_test, np.concatenate(self.neighbour_labels), self.task, ks=ks,
                                    n_relevant=np.concatenate(self.n_relevant))
        scores = RetrievalScores(method="retrieval", label=LABELS["retrieval"], kind="retrieval", metrics=metrics,
                                 fit_seconds=self.retrieval_seconds + time.perf_counter() - t1)
        top = max(ks)
        self.problem.log.line(f"{self.key} retrieval: P@{top} {metrics[f'precision@{top}']:.3f}, "
                              f"mAP@{top} {metrics[f'map@{top}']:.3f}")
        return scores


def _full_width(shares, classes, task, n_classes) -> np.ndarray:
    """k-NN vote shares as (n,) / (n, C) score arrays aligned with class indices 0..C-1."""
    if task == "multilabel":
        return shares
    out = np.zeros((shares.shape[0], n_classes))
    out[:, np.asarray(classes, dtype=int)] = shares
    return out[:, 1] if task == "binary" else out


def _auc_text(y, s, task) -> str:
    value = auc(y, s, task)
    return "undefined" if math.isnan(value) else f"{value:.3f}"


def _method_scores(m, y, s, task, names, boots, tuning: _Tuning, n_rounds) -> MethodScores:
    point, lo, hi = ci_from_bootstrap(auc(y, s, task), boots)
    threshold = ALL_HEADS[m].threshold if m in ALL_HEADS else 0.5
    report = classification_report_dict(y, s, task, threshold=threshold)
    per_class = per_class_auc(y, s, task)
    one = n_rounds == 1  # a single split: unwrap the per-round lists
    return MethodScores(
        method=m, label=LABELS[m], kind="head" if m in ALL_HEADS else "knn",
        auc=point, auc_ci=[lo, hi], accuracy=report["accuracy"], precision=report["precision_macro"],
        recall=report["recall_macro"], f1=report["f1_macro"], n_test=report["n"],
        per_class_auc={(names[c] if task != "binary" else names[1]): v for c, v in per_class.items()},
        params=tuning.params[0] if one else tuning.params,
        cv_auc=tuning.cv_auc[0] if one else tuning.cv_auc,
        cv_results=tuning.cv_results[0] if one else tuning.cv_results,
        fit_seconds=tuning.fit_seconds, not_converged=tuning.not_converged, n_fits=tuning.n_fits,
        notes=sorted(set(tuning.notes)),
    )


def _deltas(methods, curve_scores, boots) -> tuple[str | None, dict[str, Delta]]:
    """Best method by test AUC, and every other method's paired bootstrap AUC delta against it."""
    ranked = [m for m in curve_scores if methods[m].auc is not None and not math.isnan(methods[m].auc)]
    if not ranked:
        return None, {}
    best = max(ranked, key=lambda m: methods[m].auc)
    deltas = {}
    for m in ranked:
        if m != best:
            point = methods[m].auc - methods[best].auc
            deltas[m] = Delta(vs=best, **delta_from_bootstrap(point, boots[m], boots[best]))
    return best, deltas
