"""results.py: the one to_json of every result: nested results, numpy values, NaN, renamed and omitted keys."""
import json
import math
from dataclasses import dataclass, field

import numpy as np

from medsearch.results import JsonResult, to_jsonable


@dataclass
class Inner(JsonResult):
    JSON_NAMES = {"zero_filled": "zero-filled"}
    OMIT_WHEN_NONE = ("note",)

    zero_filled: int
    score: float
    note: str | None = None


@dataclass
class Outer(JsonResult):
    name: str
    parts: dict[str, Inner] = field(default_factory=dict)
    items: list[Inner] = field(default_factory=list)
    values: np.ndarray | None = None


def test_nested_results_print_through_their_own_to_json():
    out = Outer("x", parts={"a": Inner(np.int64(3), np.float32(0.5))},
                items=[Inner(1, math.nan, note="n")], values=np.array([1.5, np.nan])).to_json()
    assert out == {"name": "x", "parts": {"a": {"zero-filled": 3, "score": 0.5}},
                   "items": [{"zero-filled": 1, "score": None, "note": "n"}], "values": [1.5, None]}
    assert list(out["parts"]["a"]) == ["zero-filled", "score"]  # the field order, the note left out when unset
    assert type(out["parts"]["a"]["zero-filled"]) is int and type(out["parts"]["a"]["score"]) is float
    json.dumps(out, allow_nan=False)  # plain JSON: no numpy types, no NaN


def test_to_jsonable_converts_plain_containers_and_numpy_scalars():
    assert to_jsonable({1: (np.bool_(True), np.float64(math.nan)), "k": [np.int32(2)]}) == {"1": [True, None], "k": [2]}
