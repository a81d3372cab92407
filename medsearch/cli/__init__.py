"""Command line: maps each command to its function in medsearch.commands; no logic of its own."""
from __future__ import annotations

import json
import os
import sys

import click

from ..errors import MedsearchError


class _Group(click.Group):
    """Turns MedsearchError (and any unexpected failure) into one line on stderr and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MedsearchError as exc:
            click.echo(f"medsearch: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("medsearch: interrupted; finished batches are kept, run the same command again to resume", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("MEDSEARCH_DEBUG"):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            click.echo(f"medsearch: error: unexpected {type(exc).__name__}: {first} "
                       "(set MEDSEARCH_DEBUG=1 for the traceback and report it)", err=True)
            sys.exit(3)


@click.group(cls=_Group)
@click.version_option(package_name="medsearch")
def main():
    """medsearch: embed medical images once, then retrieve, vote and evaluate on the same store."""


def _emit(obj, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else text, nl=not text.endswith("\n") or as_json)


@main.command("index")
@click.argument("dataset", type=click.Path())
@click.option("--out", help="Index folder (default: indexes/<dataset name>).")
@click.option("--model", "models", multiple=True, help="Encoder name or spec; repeat for several (default clip-vit-b-32).")
@click.option("--weights", multiple=True, help="Local checkpoint: PATH, or MODEL=PATH with several --model.")
@click.option("--random-init", is_flag=True, help="Random weights (testing only; never used unless asked).")
@click.option("--name", help="Store key for the model (default: derived from its name).")
@click.option("--layout", default="auto", type=click.Choice(["auto", "folders", "csv", "npz"]))
@click.option("--manifest", help="CSV manifest (default: the CSV in DATASET).")
@click.option("--image-col", help="Manifest column naming the image file.")
@click.option("--label-col", help="Manifest column holding the label.")
@click.option("--label-cols", help="Comma-separated 0/1 label columns (multilabel or one-hot).")
@click.option("--group-col", help="Manifest column with the patient/lesion id (auto-detected when it repeats).")
@click.option("--split-col", help="Manifest column with an official train/val/test split.")
@click.option("--images-dir", help="Folder holding the images (default: DATASET/images or DATASET).")
@click.option("--task", type=click.Choice(["binary", "multiclass", "multilabel"]), help="Override the detected task.")
@click.option("--norm", type=click.Choice(["encoder", "imagenet", "median-mad"]), help="Input normalisation (default: the encoder's own).")
@click.option("--resize", type=int, help="Resize the shorter side to this before the centre crop.")
@click.option("--crop", type=int, help="Centre-crop size.")
@click.option("--on-missing", default="skip", type=click.Choice(["skip", "zero"]), help="Unreadable images: skip and report, or embed a zero tensor.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=os.cpu_count() or 2, show_default=True, type=click.IntRange(1), help="Parallel image-decoding threads (default: one per CPU).")
@click.option("--index-type", default="flat", show_default=True, help="flat, auto, or a FAISS factory string (HNSW32, IVF256,Flat, ...).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--commit-every", default=300.0, show_default=True, help="Seconds between store commits (finished batches are journaled anyway).")
@click.option("--moved-from", help="The dataset's old location, when this is the same dataset moved (the store was built "
                                   "from there); its files are verified by their fingerprints.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index_cmd(dataset, label_cols, quiet, as_json, **kwargs):
    """Embed every image of DATASET once per model and build its FAISS index."""
    from ..ingest.indexing import index
    from ..display import printable

    summary = index(dataset, label_cols=label_cols.split(",") if label_cols else None, progress=not quiet, **kwargs)
    lines = [f"indexed {summary['rows']} rows into {printable(summary['out'])}", f"  {summary['reading']}"]
    for key, m in summary["models"].items():
        rate = f", {m['images_per_second']} img/s" if m["images_per_second"] else ""
        lines.append(f"  {key}: {m['embedded']} embedded, {m['zero-filled']} zero-filled, {m['skipped']} skipped "
                     f"({m['embedded_this_run']} this run in {m['seconds']} s{rate}) -> {m['index_file']}")
    _emit({k: v for k, v in summary.items()}, as_json, "\n".join(lines) + "\n")


@main.command("query")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--index", "index_dir", required=True, help="Index folder made by `medsearch index`.")
@click.option("--model", help="Which model's embeddings to search (needed when the store holds several).")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--include-self", is_flag=True, help="Keep a query that is itself in the store among its neighbours.")
@click.option("--exclude-id", "exclude_ids", multiple=True, help="Leave this stored row id out of the neighbours (repeatable).")
@click.option("--weighting", default="similarity", type=click.Choice(["similarity", "uniform"]), show_default=True)
@click.option("--head", help="A head saved by `medsearch eval --save-head` (.npz) to print class probabilities.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def query_cmd(images, include_self, as_json, **kwargs):
    """Print the k most similar stored cases of each IMAGE with their labels and the k-NN vote."""
    from ..search.query import format_results, query

    results = query(list(images), exclude_self=not include_self, **kwargs)
    _emit(results, as_json, format_results(results))


def _csv_list(kind):
    def convert(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list, got '{value}'") from None
    return convert


@main.command("eval")
@click.option("--index", "index_dir", required=True, help="Index folder made by `medsearch index`.")
@click.option("--model", "models", multiple=True,
              help="Model to evaluate; repeat for several (default: all in the store). Join stored models with + "
                   "to evaluate their fusion, e.g. efficientnet-lite0+mobilenet-v2.")
@click.option("--heads", default="lr,linear-svc,svc-linear,svc-rbf", show_default=True, callback=_csv_list(str),
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
@click.option("--ks", default="1,5,10", show_default=True, callback=_csv_list(int), help="Retrieval cut-offs.")
@click.option("--knn-k", type=click.IntRange(1), help="Fixed k for the k-NN vote (default: chosen by CV).")
@click.option("--knn-weights", default="similarity", show_default=True, type=click.Choice(["similarity", "uniform"]))
@click.option("--n-boot", default=1000, show_default=True, type=click.IntRange(1), help="Bootstrap resamples for CIs.")
@click.option("--reference", help="Print published figures beside ours (HAM10000, ODIR, RetinaMNIST, ... or a dataset key).")
@click.option("--report-dir", help="Report folder (default: INDEX/reports/eval-<timestamp>).")
@click.option("--save-head", type=click.Choice(["lr", "linear-svc"]), help="Save this head (trained on the training part) for `query --head`.")
@click.option("--raw-features", is_flag=True, help="Feed raw embeddings to the heads (no standardisation), as the paper did.")
@click.option("--C", "C", callback=_csv_list(float), help="C values to search (default 0.1,1,10,100).")
@click.option("--linear-svc-loss", callback=_csv_list(str),
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
    from ..evaluation.report import format_results

    results = evaluate(heads=heads or (), knn=not no_knn, retrieval=not no_retrieval, scale=not raw_features,
                       progress=not quiet, **kwargs)
    _emit(results, as_json, format_results(results))


@main.command("info")
@click.argument("index_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def info_cmd(index_dir, as_json):
    """Show what a store holds: rows, labels, task, models and provenance."""
    from ..storage.summary import format_info, info

    d = info(index_dir)
    _emit(d, as_json, format_info(d))


@main.command("encoders")
def encoders_cmd():
    """List the named encoders (and the generic spec forms)."""
    from ..ingest.encoders import REGISTRY

    for name, spec in REGISTRY.items():
        click.echo(f"{name:<20} {spec.dim or '?':>5}-d  {'offline' if spec.offline else 'download'}  {spec.description}")
    click.echo("generic: open_clip:ARCH:PRETRAINED  timm:NAME  torchvision:NAME  (with --weights PATH for a local checkpoint)")


@main.command("demo")
@click.option("--dataset", default="breastmnist", type=click.Choice(["breastmnist", "retinamnist"]), show_default=True)
@click.option("--out", help="Index folder (default indexes/demo-<dataset>).")
@click.option("--model", default="efficientnet-lite0", show_default=True)
@click.option("-k", default=5, show_default=True, type=click.IntRange(1))
@click.option("--quiet", is_flag=True)
def demo_cmd(quiet, **kwargs):
    """Offline demo on a bundled MedMNIST file: index, query, summary."""
    from ..demo import demo

    demo(progress=not quiet, **kwargs)


if __name__ == "__main__":
    main()
