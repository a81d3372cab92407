"""Command line: one module per command; each only parses its options, calls the library and renders the result."""
from . import compact, demo, encoders, eval, index, info, query, serve  # noqa: F401  (each registers its command)
from .app import main

__all__ = ["main"]
