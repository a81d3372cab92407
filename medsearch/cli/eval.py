"""`medsearch eval`: its options, parsed and handed to the library; its results rendered.

Every default comes from ``EvalOptions()`` (medsearch/evaluation/options.py), their one home. The choices of
--knn-weights and --save-head and the C values in --C's help are written out here, as they were, so that
the CLI starts without importing scikit-learn and FAISS; tests/evaluation/test_options.py checks that they
equal knn.WEIGHTS, heads.SAVABLE_HEADS and heads.C_GRID."""
from __future__ import annotations

import click

from ..evaluation.eval_options import SPLITS, EvalOptions
from .app import emit, main, csv_list

DEFAULTS = EvalOptions()


def _listed(values) -> str:
    """A default tuple as the comma-separated text its flag takes."""
    return ",".join(str(v) for v in values)


@main.command("eval")
@click.option("--index", "index_dir", required=True, help="Index folder made by `medsearch index`.")
@click.option("--model", "models", multiple=True,
              help="Model to evaluate; repeat for several (default: all in the store). Join stored models with + "
                   "to evaluate their fusion, e.g. efficientnet-lite0+mobilenet-v2.")
@click.option("--heads", default=_listed(DEFAULTS.heads), show_default=True, callback=csv_list(str),
              help="Comma-separated classification heads (empty for none).")
@click.option("--no-knn", is_flag=True, help="Skip k-NN voting.")
@click.option("--no-retrieval", is_flag=True, help="Skip the retrieval metrics.")
@click.option("--split", default=DEFAULTS.split, show_default=True, type=click.Choice(SPLITS),
              help="auto: the official split if the store has one, else an 80/20 holdout grouped by patient when it "
                   "has groups; paper: the paper's image-level split (leaks when patients repeat).")
@click.option("--cv", type=click.IntRange(2), help="K outer folds instead of one holdout (small datasets).")
@click.option("--folds", default=DEFAULTS.folds, show_default=True, type=click.IntRange(2),
              help="Tuning folds on the training part.")
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=int)
@click.option("--where", multiple=True, default=DEFAULTS.where,
              help="Evaluate only rows whose DICOM header meets this (before the split): FIELD=VALUE, FIELD=V1,V2 "
                   "or FIELD!=VALUE, e.g. ViewPosition=PA (repeatable; all must hold).")
@click.option("--test-size", default=DEFAULTS.test_size, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--ks", default=_listed(DEFAULTS.ks), show_default=True, callback=csv_list(int), help="Retrieval cut-offs.")
@click.option("--knn-k", type=click.IntRange(1), help="Fixed k for the k-NN vote (default: chosen by CV).")
@click.option("--knn-weights", default=DEFAULTS.knn_weights, show_default=True,
              type=click.Choice(["similarity", "uniform"]))
@click.option("--n-boot", default=DEFAULTS.n_boot, show_default=True, type=click.IntRange(1),
              help="Bootstrap resamples for CIs.")
@click.option("--reference", help="Print published figures beside ours (HAM10000, ODIR, RetinaMNIST, ... or a dataset key).")
@click.option("--report-dir", help="Report folder (default: INDEX/reports/eval-<timestamp>).")
@click.option("--save-head", type=click.Choice(["lr", "linear-svc", "mlp", "dvme"]),
              help="Save this head (trained on the training part) for `query --head`.")
@click.option("--raw-features", is_flag=True, help="Feed raw embeddings to the heads (no standardisation), as the paper did.")
@click.option("--C", "C", callback=csv_list(float), help="C values to search (default 0.1,1,10,100).")
@click.option("--linear-svc-loss", callback=csv_list(str),
              help="LinearSVC losses to search (default hinge,squared_hinge, the paper's).")
@click.option("--max-iter", "linear_svc_max_iter", default=DEFAULTS.linear_svc_max_iter, show_default=True,
              type=click.IntRange(1),
              help="Cap of the LinearSVC solver: Newton steps (more images than dimensions; also SVC-linear's "
                   "there, binary and multilabel) or libsvm passes (fewer images than dimensions).")
@click.option("--jobs", "n_jobs", type=click.IntRange(1), help="Parallel workers for the grid search (processes when a primal solver runs, else threads; default: all cores; fewer when the free memory would not hold them).")
@click.option("--max-tuning-rows", default=DEFAULTS.max_tuning_rows, show_default=True, type=int,
              help="Above this many training rows, heads are tuned (and k chosen) on a stratified subsample of this "
                   "many rows, then refitted on every training row; stated in the results.")
@click.option("--max-kernel-rows", default=DEFAULTS.max_kernel_rows, show_default=True, type=int,
              help="Above this many training rows, kernel SVCs (svc-rbf; svc-linear on multiclass) are tuned and "
                   "fitted on a stratified subsample of this many rows (their cost grows with rows squared); "
                   "stated in the results.")
@click.option("--exact", is_flag=True,
              help="No approximations: tune and fit every head and choose k on every training row (slow and "
                   "memory-hungry on large stores).")
@click.option("--train-fractions", callback=lambda ctx, param, value: value or DEFAULTS.train_fractions,
              help="Label-efficiency curves: retrain every method on stratified subsets holding these shares of the "
                   "training part (grouped by patient where the store has groups; nested across fractions), "
                   "scored on the same test part, e.g. 0.01,0.05,0.1,0.25,1.0 (default: no curves).")
@click.option("--fraction-seeds", default=DEFAULTS.fraction_seeds, show_default=True, type=int,
              help="Seeded subsets per --train-fractions value; the band is the min-max over them.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def eval_cmd(index_dir, no_knn, no_retrieval, raw_features, quiet, as_json, heads, **kwargs):
    """Score each model's embeddings: the paper's heads, k-NN voting and retrieval on one honest split."""
    from ..evaluation.evaluate import evaluate
    from ..evaluation.report import format_eval_results

    options = EvalOptions(heads=heads or (), knn=not no_knn, retrieval=not no_retrieval, scale=not raw_features,
                          progress=not quiet, **kwargs)
    results = evaluate(index_dir, options).to_json()
    emit(results, as_json, format_eval_results(results))
