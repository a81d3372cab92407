"""`medsearch compact`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

import click

from .app import emit, main


@main.command("compact")
@click.argument("index_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def compact_cmd(index_dir, as_json):
    """Drop removed rows and superseded data from a store's files now (and upgrade a format-1 store)."""
    from ..ingest.compact import compact

    s = compact(index_dir)
    emit(s.to_json(), as_json, f"compacted {s.store}: {s.rows_before} -> {s.rows_after} rows "
                               f"({s.removed_rows_dropped} removed rows dropped), {s.segments_before} -> "
                               f"{s.segments_after} segments in {s.seconds} s; indexes: "
                               + (", ".join(f"{k} {v}" for k, v in s.indexes.items()) or "none") + "\n")
