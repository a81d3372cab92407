"""What `index` tells the user while it works: one line per message on stderr, so stdout keeps the summary."""
from __future__ import annotations

import sys


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    print(f"medsearch: warning: {msg}", file=sys.stderr, flush=True)
