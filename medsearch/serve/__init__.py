"""`medsearch serve`: the web page and JSON API over one or more stores (``create_app`` builds the app)."""
from .app import create_app

__all__ = ["create_app"]
