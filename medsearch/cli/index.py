"""`medsearch index`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

import click

from ..ingest.dicom.pixel_options import FRAMES, WINDOW_HELP
from ..ingest.index_options import IndexOptions
from ..storage.schema import LAYOUTS, TASKS
from .app import emit, main

DEFAULTS = IndexOptions()


@main.command("index")
@click.argument("dataset", type=click.Path())
@click.option("--out", help="Index folder (default: indexes/<dataset name>).")
@click.option("--model", "models", multiple=True,
              help=f"Encoder name or spec; repeat for several (default {', '.join(DEFAULTS.models)}).")
@click.option("--weights", multiple=True, help="Local checkpoint: PATH, or MODEL=PATH with several --model.")
@click.option("--random-init", is_flag=True, help="Random weights (testing only; never used unless asked).")
@click.option("--name", help="Store key for the model (default: derived from its name).")
@click.option("--layout", default=DEFAULTS.layout, type=click.Choice(["auto", *LAYOUTS]))
@click.option("--manifest", help="CSV manifest (default: the CSV in DATASET).")
@click.option("--image-col", help="Manifest column naming the image file.")
@click.option("--label-col", help="Manifest column holding the label.")
@click.option("--label-cols", help="Comma-separated 0/1 label columns (multilabel or one-hot).")
@click.option("--group-col", help="Manifest column with the patient/lesion id (auto-detected when it repeats).")
@click.option("--split-col", help="Manifest column with an official train/val/test split.")
@click.option("--images-dir", help="Folder holding the images (default: DATASET/images or DATASET).")
@click.option("--task", type=click.Choice(TASKS), help="Override the detected task.")
@click.option("--label-tag", help="DICOM header keyword whose value is the label (e.g. BodyPartExamined), for a plain "
                                  "folder tree or DICOMDIR export of DICOM files with no class folders or manifest.")
@click.option("--window", default=DEFAULTS.window, show_default=True,
              help=f"How DICOM grey values are windowed to 8 bits: {WINDOW_HELP}.")
@click.option("--frames", default=DEFAULTS.frames, show_default=True, type=click.Choice(FRAMES),
              help="Multi-frame DICOM files: one row per file (its middle frame), or one row per frame (FILE#N).")
@click.option("--id-key", help="File holding the secret (at least 32 characters) for the keyed hashes of DICOM patient, "
                               "study and series ids (default: OUT.id-key beside the index folder, made on the first run).")
@click.option("--norm", type=click.Choice(["encoder", "imagenet", "median-mad"]), help="Input normalisation (default: the encoder's own).")
@click.option("--resize", type=int, help="Resize the shorter side to this before the centre crop.")
@click.option("--crop", type=int, help="Centre-crop size.")
@click.option("--on-missing", default=DEFAULTS.on_missing, type=click.Choice(["skip", "zero"]), help="Unreadable images: skip and report, or embed a zero tensor.")
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=DEFAULTS.workers, show_default=True, type=click.IntRange(1), help="Parallel image-decoding threads (default: one per CPU).")
@click.option("--index-type", default=DEFAULTS.index_type, show_default=True,
              help="auto (exact up to 100k rows, then the approximate index that fits --max-memory, tuned to "
                   "--recall-target), flat, or a FAISS factory string (HNSW32, IVF1024,PQ64, ...).")
@click.option("--recall-target", default=DEFAULTS.recall_target, show_default=True, type=float,
              help="recall@10 against exact search an approximate index is tuned to reach (e.g. 0.95, 0.99).")
@click.option("--max-memory", default=f"{DEFAULTS.max_memory >> 20}M", show_default=True,
              help="Memory the index may take (auto picks HNSW while it fits, else IVF-PQ with exact re-ranking).")
@click.option("--views", help="Test-time views averaged into each embedding, comma-separated: hflip, vflip (stored "
                              "as the model variant MODEL-hflip, compared and fused like any other model).")
@click.option("--shards", default=DEFAULTS.shards, show_default=True, type=click.IntRange(1),
              help="Split each model's index into this many row-range shard files, searched in parallel and merged "
                   "exactly as one index would answer (for indexes larger than memory).")
@click.option("--device", default=DEFAULTS.device, show_default=True)
@click.option("--engine", default=DEFAULTS.engine, show_default=True, type=click.Choice(["local", "ray"]),
              help="Where images are decoded and embedded: in this process, or in a pool of Ray actors "
                   "(pip install 'medsearch[ray]'); this process writes the store either way.")
@click.option("--ray-address", help="Address of an existing Ray cluster (e.g. 10.0.0.5:6379 or auto); without it "
                                    "--engine ray starts Ray on this machine.")
@click.option("--gpus-per-worker", default=DEFAULTS.gpus_per_worker, show_default=True, type=click.FloatRange(0),
              help="GPUs each Ray encoder actor takes (0: CPU actors; 0.5 puts two actors on one GPU).")
@click.option("--commit-every", default=DEFAULTS.commit_every, show_default=True, help="Seconds between store commits (finished batches are journaled anyway).")
@click.option("--moved-from", help="The dataset's old location, when this is the same dataset moved (the store was built "
                                   "from there); its files are verified by their fingerprints.")
@click.option("--no-compact", "auto_compact", is_flag=True, default=True, flag_value=False,
              help="Leave removed rows and superseded data in the files (out of every search) until `medsearch compact`.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index_cmd(dataset, label_cols, quiet, as_json, **kwargs):
    """Embed every image of DATASET once per model and build its FAISS index."""
    from ..ingest.indexing import index_dataset

    from ..ingest.index_options import parse_bytes

    kwargs["max_memory"] = parse_bytes(kwargs["max_memory"])
    kwargs["views"] = tuple(v.strip() for v in kwargs["views"].split(",")) if kwargs["views"] else ()
    options = IndexOptions(label_cols=label_cols.split(",") if label_cols else None, progress=not quiet, **kwargs)
    summary = index_dataset(dataset, options)
    emit(summary.to_json(), as_json, format_index_summary(summary))


def format_index_summary(summary) -> str:
    """The text `medsearch index` prints: the dataset, then one line per model."""
    from ..display import printable

    import re

    lines = [f"indexed {summary.rows} rows into {printable(summary.out)}", f"  {summary.reading}"]
    for key, m in summary.models.items():
        rate = f", {m.images_per_second} img/s" if m.images_per_second else ""
        sharded = re.search(r"\.shard-0-of-(\d+)\.faiss$", m.index_file)
        more = f" (and {int(sharded.group(1)) - 1} more shard files)" if sharded else ""
        lines.append(f"  {key}: {m.embedded} embedded, {m.zero_filled} zero-filled, {m.skipped} skipped "
                     f"({m.embedded_this_run} this run in {m.seconds} s{rate}) -> {m.index_file}{more}")
    return "\n".join(lines) + "\n"
