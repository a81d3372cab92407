"""`medsearch demo`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

import click

from ..demo import DEMO_DATASETS, DemoOptions
from .app import main
from .info import format_store_summary
from .query import format_query_results

DEFAULTS = DemoOptions()


@main.command("demo")
@click.option("--dataset", default=DEFAULTS.dataset, type=click.Choice(DEMO_DATASETS), show_default=True)
@click.option("--out", help="Index folder (default indexes/demo-<dataset>).")
@click.option("--model", default=DEFAULTS.model, show_default=True)
@click.option("-k", default=DEFAULTS.k, show_default=True, type=click.IntRange(1))
@click.option("--quiet", is_flag=True)
def demo_cmd(quiet, **kwargs):
    """Offline demo on a bundled MedMNIST file: index, query, summary."""
    from ..demo import demo

    d = demo(progress=not quiet, **kwargs)
    click.echo("\n".join([format_store_summary(d.summary),
                          f"query: the first official test image of {d.dataset} (true label: {d.true_label})",
                          format_query_results(d.results)]))
