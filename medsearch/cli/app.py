"""The command group: turns errors into one line and an exit code, and prints results as text or JSON."""
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


def emit(obj, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else text, nl=not text.endswith("\n") or as_json)


def csv_list(kind):
    def convert(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list, got '{value}'") from None
    return convert
