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
@click.option("--verify", is_flag=True, help="Also read every stored embedding and hash every index file whole "
                                               "(costs a read of the whole store).")
def info_cmd(index_dir, as_json, verify):
    """Show what a store holds: rows, labels, task, models and provenance."""
    from ..storage.summary import store_summary

    summary = store_summary(index_dir, verify=verify)
    emit(summary.to_json(), as_json, format_store_summary(summary))


def _dicom_lines(dc: dict) -> list[str]:
    lines = [f"DICOM headers: {dc['rows_with_header']} rows; fields stored: {', '.join(dc['fields'])}",
             f"  ids stored only as keyed hashes ({dc['hash']}): {', '.join(dc['hashed_ids'])}",
             f"  id key: {dc['key']}, check {dc['key_check']}; groups from {dc['groups']}"]
    if dc["rows_without_patient_id"]:
        lines.append(f"  {dc['rows_without_patient_id']} rows have no PatientID: each is its own group")
    lines.append(f"  never stored: {dc['not_stored']}")
    return lines


def format_store_summary(d: StoreSummary) -> str:
    """Plain-text rendering of a store summary for the terminal."""
    lines = [f"store: {d.store}", f"rows: {d.rows}  task: {d.task}  dataset: {d.dataset_root}",
             "labels: " + ", ".join(f"{k} ({v})" for k, v in d.labels.items())]
    if d.groups is not None:
        lines.append(f"groups: {d.groups} distinct (patients/lesions)")
    if d.splits:
        lines.append("official split: " + ", ".join(f"{k} {v}" for k, v in d.splits.items()))
    if d.dicom:
        lines += _dicom_lines(d.dicom)
    if d.removed:
        lines.append(f"removed: {d.removed} rows no longer in the dataset (out of every search; "
                     "`medsearch compact` drops them from the files)")
    if d.segments is not None:
        lines.append(f"format {d.format_version}: {d.segments} segment files")
    for key, m in d.models.items():
        p = m.provenance
        lines.append(f"model {key}: dim {m.dim}, embedded {m.embedded}, zero-filled {m.zero_filled}, "
                     f"skipped {m.skipped}, pending {m.pending}")
        lines.append(f"  encoder {p.get('encoder')} ({p.get('family')} {p.get('arch')}), weights {p.get('weights_source')}"
                     f"{' sha256 ' + p['weights_sha256'][:12] if p.get('weights_sha256') else ''}")
        lines.append(f"  preprocess {p.get('preprocess')}")
        if m.index:
            ix = m.index
            how = "exact" if ix.get("exact", True) else (
                f"approximate, recall@10 {ix.get('recall_at_10')} at {ix.get('search_params')}")
            factory = f": {ix['factory']}" if ix.get("factory") else ""
            shards = f" and {ix['shard_count'] - 1} more shard files" if ix.get("shard_count", 1) > 1 else ""
            lines.append(f"  index {ix.get('file')}{shards} ({ix.get('type')}{factory}, {ix.get('ntotal')} "
                         f"vectors, {how}"
                         + (f", {ix['bytes_per_vector']} bytes/vector" if "bytes_per_vector" in ix else "") + ")")
    if d.verified:
        lines.append(f"verified: {d.verified}")
    return "\n".join(lines) + "\n"
