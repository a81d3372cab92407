"""Progress lines and warnings of one evaluation, on stderr; warnings are also kept for the report.

A step of a large evaluation (a head's grid search, the k-NN's folds, the bootstrap) can run for minutes;
its Meter prints units done / total, elapsed time, rate and ETA, at most every PROGRESS_EVERY seconds.
"""
from __future__ import annotations

import sys
import time

PROGRESS_EVERY = 5.0  # seconds between two lines of one meter


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

    def meter(self, label: str, unit: str = "units"):
        """A factory ``start(total) -> advance()`` for a step of ``total`` units (see Meter); None when
        progress is off."""
        if not self.progress:
            return None
        return lambda total: Meter(self, label, total, unit).advance


class Meter:
    """Counts a step's units; prints '<label>: 3/40 units, 12 s, 0.25 units/s, ETA 148 s' now and then,
    and a last line when the step ends if it printed any before."""

    def __init__(self, log: EvalLog, label: str, total: int, unit: str = "units"):
        self.log, self.label, self.total, self.unit = log, label, max(1, int(total)), unit
        self.done, self.printed = 0, False
        self.start = self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY or (self.done >= self.total and self.printed):
            self.last, self.printed = now, True
            self.log.line(self.text(now - self.start))

    def text(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        left = max(0, self.total - self.done)
        eta = f"ETA {left / rate:.0f} s" if rate > 0 and left else "done"
        shown = f"{rate:.2f}" if rate < 10 else f"{rate:.0f}"
        return (f"{self.label}: {self.done}/{self.total} {self.unit}, {elapsed:.0f} s, {shown} {self.unit}/s, "
                f"{eta}")
