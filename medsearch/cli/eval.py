"""`medsearch eval`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

import click

from .app import emit, main, csv_list


@main.command("eval")
@click.option("--index", "index_dir", required=True, help="Index folder made by `medsearch index`.")
@click.option("--model", "models", multiple=True,
              help="Model to evaluate; repeat for several (default: all in the store). Join stored models with + "
                   "to evaluate their fusion, e.g. efficientnet-lite0+mobilenet-v2.")
@click.option("--heads", default="lr,linear-svc,svc-linear,svc-rbf", show_default=True, callback=csv_list(str),
              help="Comma-separated classification heads (empty for none).")
@click.option("--no-knn", is_flag=True, help="Skip k-NN voting.")
@click.option("--no-retrieval", is_flag=True, help="Skip the retrieval metrics.")
@click.option("--split", default="auto", show_default=True, type=click.Choice(["auto", "official", "grouped", "paper"]),
              help="auto: the official split if the store has one, else an 80/20 holdout grouped by patient when it "
                   "has groups; paper: the paper's image-level split (leaks when patients repeat).")
@click.option("--cv", type=click.IntRange(2), help="K outer folds instead of one holdout (small datasets).")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2), help="Tuning folds on the training part.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--test-size", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--ks", default="1,5,10", show_default=True, callback=csv_list(int), help="Retrieval cut-offs.")
@click.option("--knn-k", type=click.IntRange(1), help="Fixed k for the k-NN vote (default: chosen by CV).")
@click.option("--knn-weights", default="similarity", show_default=True, type=click.Choice(["similarity", "uniform"]))
@click.option("--n-boot", default=1000, show_default=True, type=click.IntRange(1), help="Bootstrap resamples for CIs.")
@click.option("--reference", help="Print published figures beside ours (HAM10000, ODIR, RetinaMNIST, ... or a dataset key).")
@click.option("--report-dir", help="Report folder (default: INDEX/reports/eval-<timestamp>).")
@click.option("--save-head", type=click.Choice(["lr", "linear-svc"]), help="Save this head (trained on the training part) for `query --head`.")
@click.option("--raw-features", is_flag=True, help="Feed raw embeddings to the heads (no standardisation), as the paper did.")
@click.option("--C", "C", callback=csv_list(float), help="C values to search (default 0.1,1,10,100).")
@click.option("--linear-svc-loss", callback=csv_list(str),
              help="LinearSVC losses to search (default hinge,squared_hinge, the paper's).")
@click.option("--max-iter", "linear_svc_max_iter", default=1000, show_default=True, type=click.IntRange(1),
              help="Cap of the LinearSVC solver: Newton steps (more images than dimensions; also SVC-linear's "
                   "there, binary and multilabel) or libsvm passes (fewer images than dimensions).")
@click.option("--jobs", "n_jobs", type=click.IntRange(1), help="Parallel workers for the grid search (processes when a primal solver runs, else threads; default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def eval_cmd(no_knn, no_retrieval, raw_features, quiet, as_json, heads, **kwargs):
    """Score each model's embeddings: the paper's heads, k-NN voting and retrieval on one honest split."""
    from ..evaluation.evaluate import evaluate
    from ..evaluation.report import format_eval_results

    results = evaluate(heads=heads or (), knn=not no_knn, retrieval=not no_retrieval, scale=not raw_features,
                       progress=not quiet, **kwargs)
    emit(results, as_json, format_eval_results(results))
