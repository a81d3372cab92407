"""`medsearch serve`: the web page and JSON API over one or more index folders, encoders and indexes kept warm.
Binds to 127.0.0.1 unless told otherwise; beyond the loopback it refuses to start without a token."""
from __future__ import annotations

import ipaddress

import click

from ..errors import MedsearchError
from .app import main


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.command("serve")
@click.option("--index", "index_dirs", multiple=True, required=True,
              help="Index folder made by `medsearch index` (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but the loopback needs --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="MEDSEARCH_TOKEN", default=None,
              help="Secret every request must carry (header 'Authorization: Bearer TOKEN', or the page opened "
                   "once as /?token=TOKEN). Also read from MEDSEARCH_TOKEN.")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(0.001, 1024),
              help="Largest upload accepted (larger: HTTP 413).")
@click.option("--device", default="cpu", show_default=True, help="Device the encoders run on.")
def serve_cmd(index_dirs, host, port, token, max_upload_mb, device):
    """Serve a page and JSON API to search the stores in INDEX folders by image, browse cases and eval reports."""
    if token is not None and len(token) < 8:
        raise MedsearchError("--token is shorter than 8 characters: use a longer secret (e.g. from `openssl rand -hex 16`)")
    if not is_loopback(host) and not token:
        raise MedsearchError(f"--host {host} makes the server reachable from other machines: give --token (or set "
                             "MEDSEARCH_TOKEN) so that only those who have it can search, or serve on 127.0.0.1")
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as exc:
        raise MedsearchError(f"serve needs the web packages ({exc.name} is missing): "
                             "pip install 'medsearch[serve]'") from None

    hosts = ("127.0.0.1", "localhost", "::1", "[::1]")
    app = create_app(list(index_dirs), token=token, max_upload_bytes=int(max_upload_mb * 1e6), device=device,
                     allowed_hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"medsearch: serving {', '.join(app.state.service.indexes)} on http://{shown}:{port}/"
               + (" (open it once as /?token=TOKEN)" if token else ""), err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
