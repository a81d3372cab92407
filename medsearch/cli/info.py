"""`medsearch info`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .app import emit, main

if TYPE_CHECKING:
    from ..storage.summary import StoreSummary


@main.command("info")
@click.argument("index_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def info_cmd(index_dir, as_json):
    """Show what a store holds: rows, labels, task, models and provenance."""
    from ..storage.summary import store_summary

    summary = store_summary(index_dir)
    emit(summary.to_json(), as_json, format_store_summary(summary))


def format_store_summary(d: StoreSummary) -> str:
    """Plain-text rendering of a store summary for the terminal."""
    lines = [f"store: {d.store}", f"rows: {d.rows}  task: {d.task}  dataset: {d.dataset_root}",
             "labels: " + ", ".join(f"{k} ({v})" for k, v in d.labels.items())]
    if d.groups is not None:
        lines.append(f"groups: {d.groups} distinct (patients/lesions)")
    if d.splits:
        lines.append("official split: " + ", ".join(f"{k} {v}" for k, v in d.splits.items()))
    for key, m in d.models.items():
        p = m.provenance
        lines.append(f"model {key}: dim {m.dim}, embedded {m.embedded}, zero-filled {m.zero_filled}, "
                     f"skipped {m.skipped}, pending {m.pending}")
        lines.append(f"  encoder {p.get('encoder')} ({p.get('family')} {p.get('arch')}), weights {p.get('weights_source')}"
                     f"{' sha256 ' + p['weights_sha256'][:12] if p.get('weights_sha256') else ''}")
        lines.append(f"  preprocess {p.get('preprocess')}")
        if m.index:
            lines.append(f"  index {m.index.get('file')} ({m.index.get('type')}, {m.index.get('ntotal')} vectors)")
    return "\n".join(lines) + "\n"
