"""`medsearch encoders`: its options, parsed and handed to the library; its results rendered."""
from __future__ import annotations

import click

from .app import main


@main.command("encoders")
def encoders_cmd():
    """List the named encoders (and the generic spec forms)."""
    from ..ingest.encoders import REGISTRY

    for name, spec in REGISTRY.items():
        click.echo(f"{name:<20} {spec.dim or '?':>5}-d  {'offline' if spec.offline else 'download'}  {spec.description}")
    click.echo("generic: open_clip:ARCH:PRETRAINED  timm:NAME  torchvision:NAME  (with --weights PATH for a local checkpoint)")
