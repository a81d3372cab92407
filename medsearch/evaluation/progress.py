"""Progress lines and warnings of one evaluation, on stderr; warnings are also kept for the report."""
from __future__ import annotations

import sys


class EvalLog:
    """``line`` prints only when progress is on; ``warn`` always prints and keeps the text."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.warnings: list[str] = []

    def line(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print(f"medsearch: warning: {text}", file=sys.stderr, flush=True)
