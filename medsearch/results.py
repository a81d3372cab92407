"""What every result object shares: one ``to_json`` that gives the plain dict the CLI prints with --json.

Results are dataclasses so their fields are documented in one place; ``to_json`` turns them (and anything
nested in them: dataclasses, dicts, lists, numpy values) into JSON-ready Python, NaN into None.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


def to_jsonable(obj):
    """JSON-ready copy: dataclasses to dicts (fields in order), numpy scalars and arrays to Python, NaN to None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


class JsonResult:
    """Mixin for result dataclasses: ``to_json()`` is the dict that ``--json`` prints."""

    def to_json(self) -> dict:
        return to_jsonable(self)
