"""What `query` returns: one QueryResult per query image, its Neighbour items and, with a head, a HeadOutput.
``to_json()`` gives the dict `medsearch query --json` prints; optional parts (a neighbour's group, the head,
the head's probabilities or scores) are left out of it when absent, as the JSON output has always done."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..results import JsonResult


def _without_absent(out: dict, *keys: str) -> dict:
    for key in keys:
        if out.get(key) is None:
            out.pop(key, None)
    return out


@dataclass
class Neighbour(JsonResult):
    """A stored row among a query's k nearest: its rank (1 = nearest), row number, id, label names,
    cosine similarity (rounded to 4 places), source path, and patient group when the store has groups."""

    rank: int
    row: int
    id: str
    labels: list[str]
    similarity: float
    source: str
    group: str | None = None

    def to_json(self) -> dict:
        return _without_absent(super().to_json(), "group")


@dataclass
class HeadOutput(JsonResult):
    """A saved head applied to the query: class probabilities of an lr head, or decision scores (> 0: that
    class) of a linear-svc head, named by class."""

    name: str
    probabilities: dict[str, float] | None = None
    decision_scores: dict[str, float] | None = None

    def to_json(self) -> dict:
        return _without_absent(super().to_json(), "probabilities", "decision_scores")


@dataclass
class QueryResult(JsonResult):
    """One query image: the model searched, which stored rows were left out (``self_ids``: copies of the
    query itself; ``excluded_ids``: asked for), the neighbours, the k-NN vote share per label, and the head's
    output when a head was given."""

    query: str
    model: str
    excluded_self: bool
    self_ids: list[str]
    excluded_ids: list[str]
    neighbours: list[Neighbour] = field(default_factory=list)
    vote: dict[str, float] = field(default_factory=dict)
    head: HeadOutput | None = None

    def to_json(self) -> dict:
        out = super().to_json()
        out["neighbours"] = [n.to_json() for n in self.neighbours]
        out["head"] = self.head.to_json() if self.head is not None else None
        return _without_absent(out, "head")
