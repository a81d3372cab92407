"""What `query` returns: one QueryResult per query image, its Neighbour items and, with a head, a HeadOutput.
``to_json()`` gives the dict `medsearch query --json` prints; optional parts (a neighbour's group, the head,
the head's probabilities or scores) are left out of it when absent, as the JSON output has always done."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..results import JsonResult


@dataclass
class Neighbour(JsonResult):
    """A stored row among a query's k nearest: its rank (1 = nearest), row number, id, label names,
    cosine similarity (rounded to 4 places), source path, patient group when the store has groups, and
    ``header``: its stored DICOM header fields and hashed study/series (those it has) when the store has them."""

    OMIT_WHEN_NONE = ("group", "header")

    rank: int
    row: int
    id: str
    labels: list[str]
    similarity: float
    source: str
    group: str | None = None
    header: dict[str, str] | None = None


@dataclass
class HeadOutput(JsonResult):
    """A saved head applied to the query: class probabilities of an lr head, or decision scores (> 0: that
    class) of a linear-svc head, named by class."""

    OMIT_WHEN_NONE = ("probabilities", "decision_scores")

    name: str
    probabilities: dict[str, float] | None = None
    decision_scores: dict[str, float] | None = None


@dataclass
class SearchInfo(JsonResult):
    """How the neighbours were found: the index type asked for (``index_type``) and the structure built
    (``factory``); ``exact`` search, or approximate with the ``recall_at_10`` measured when the index was built
    (None where the store predates that record) at its ``search_params``, tuned to ``recall_target``; the
    index's size in ``bytes_per_vector`` (None where not recorded)."""

    index_type: str
    factory: str | None
    exact: bool
    recall_at_10: float | None
    search_params: dict = field(default_factory=dict)
    recall_target: float | None = None
    bytes_per_vector: float | None = None


@dataclass
class QueryResult(JsonResult):
    """One query image: the model searched, which stored rows were left out (``self_ids``: copies of the
    query itself; ``excluded_ids``: asked for), the neighbours, the k-NN vote share per label, and the head's
    output when a head was given; ``search`` says whether the search was exact or how approximate it is;
    ``where``: the header conditions every neighbour met (``--where``), None without."""

    OMIT_WHEN_NONE = ("search", "head", "where")

    query: str
    model: str
    excluded_self: bool
    self_ids: list[str]
    excluded_ids: list[str]
    neighbours: list[Neighbour] = field(default_factory=list)
    vote: dict[str, float] = field(default_factory=dict)
    search: SearchInfo | None = None
    head: HeadOutput | None = None
    where: list[str] | None = None
