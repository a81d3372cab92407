"""`medsearch query`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..display import printable
from ..search.query_options import QueryOptions
from .app import emit, main

if TYPE_CHECKING:
    from ..search.query_results import HeadOutput, QueryResult, SearchInfo

DEFAULTS = QueryOptions()


@main.command("query")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--index", "index_dir", required=True, help="Index folder made by `medsearch index`.")
@click.option("--model", default=DEFAULTS.model,
              help="Which model's embeddings to search (needed when the store holds several).")
@click.option("-k", default=DEFAULTS.k, show_default=True, type=click.IntRange(1))
@click.option("--include-self", is_flag=True, default=not DEFAULTS.exclude_self,
              help="Keep a query that is itself in the store among its neighbours.")
@click.option("--exclude-id", "exclude_ids", multiple=True, default=DEFAULTS.exclude_ids,
              help="Leave this stored row id out of the neighbours (repeatable).")
@click.option("--weighting", default=DEFAULTS.weighting, type=click.Choice(["similarity", "uniform"]), show_default=True)
@click.option("--head", default=DEFAULTS.head,
              help="A head saved by `medsearch eval --save-head` (.npz) to print class probabilities.")
@click.option("--device", default=DEFAULTS.device, show_default=True)
@click.option("--exact", is_flag=True, default=DEFAULTS.exact,
              help="Search the stored vectors exactly, even where the store's index is approximate.")
@click.option("--where", multiple=True, default=DEFAULTS.where,
              help="Only neighbours whose DICOM header meets this: FIELD=VALUE, FIELD=V1,V2 or FIELD!=VALUE, e.g. "
                   "ViewPosition=PA (repeatable; all must hold).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--gallery", type=click.Path(dir_okay=False), default=None,
              help="Also draw a contact sheet (each query, its neighbours, labels, similarity) to this PNG.")
def query_cmd(images, index_dir, include_self, as_json, gallery, **kwargs):
    """Print the k most similar stored cases of each IMAGE with their labels and the k-NN vote."""
    from ..search.query import query

    options = QueryOptions(exclude_self=not include_self, **kwargs)
    if gallery:
        from ..search.gallery import check_gallery_path, write_gallery
        from ..storage.store import read_store

        check_gallery_path(gallery)
    results = query(list(images), index_dir=index_dir, options=options)
    if gallery:

        width, height = write_gallery(results, read_store(index_dir), gallery)
        click.echo(f"wrote the contact sheet {printable(gallery)} ({width}x{height})", err=True)
    emit([r.to_json() for r in results], as_json, format_query_results(results))


def _self_note(self_ids: list[str]) -> str:
    if not self_ids:
        return ""
    if len(self_ids) == 1:
        return ", itself excluded"
    return f", itself excluded: {len(self_ids)} stored files with its bytes ({', '.join(printable(i) for i in self_ids[:3])})"


def _head_line(head: HeadOutput) -> str:
    if head.probabilities is not None:
        probs = sorted(head.probabilities.items(), key=lambda kv: -kv[1])
        return f"  {head.name} probabilities: " + ", ".join(f"{printable(n)} {p:.0%}" for n, p in probs[:5])
    scores = sorted(head.decision_scores.items(), key=lambda kv: -kv[1])
    return (f"  {head.name} decision scores (> 0: predicted): "
            + ", ".join(f"{printable(n)} {v:+.2f}" for n, v in scores[:5]))


def _search_line(search: SearchInfo) -> str | None:
    """Nothing for exact search; for an approximate index, how approximate it was measured to be."""
    if search is None or search.exact:
        return None
    params = "".join(f", {k} {v}" for k, v in search.search_params.items())
    recall = ("recall@10 not measured (too few rows, or built before medsearch measured it)" if search.recall_at_10 is None
              else f"recall@10 {search.recall_at_10:.3f} measured when the index was built")
    return f"  approximate search ({printable(search.index_type)}: {search.factory}{params}): {recall}; --exact for exact"


def _header_text(header: dict[str, str]) -> str:
    """A neighbour's stored DICOM fields on one line (the hashed study and series are in --json)."""
    return printable(" ".join(f"{k}={v}" for k, v in header.items() if k not in ("study", "series")))


def format_query_results(results: list[QueryResult]) -> str:
    """Plain-text rendering of query results for the terminal: one line per item, every path, id and label
    name escaped by display.printable (the JSON output keeps them exact)."""
    lines = []
    for res in results:
        excluded = ", ".join(printable(i) for i in res.excluded_ids)
        lines.append(f"query: {printable(res.query)}  (model {printable(res.model)}"
                     f"{_self_note(res.self_ids)}"
                     f"{', excluding ' + excluded if res.excluded_ids else ''}"
                     f"{', where ' + printable(' and '.join(res.where)) if res.where else ''})")
        approximate = _search_line(res.search)
        if approximate:
            lines.append(approximate)
        lines.append(f"  {'rank':>4}  {'similarity':>10}  {'label(s)':<24}  id / path")
        for n in res.neighbours:
            labels = ", ".join(printable(name) for name in n.labels) or "-"
            lines.append(f"  {n.rank:>4}  {n.similarity:>10.4f}  {labels:<24.24}  {printable(n.source)}")
            if n.header:
                lines.append(f"  {'':>4}  {'':>10}  {'':<24}  " + _header_text(n.header))
        top = sorted(res.vote.items(), key=lambda kv: -kv[1])
        lines.append("  k-NN vote: " + ", ".join(f"{printable(name)} {share:.0%}" for name, share in top if share > 0))
        if res.head is not None:
            lines.append(_head_line(res.head))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
