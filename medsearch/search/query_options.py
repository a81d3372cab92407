"""The options of `query` and their defaults, in one place: the library's keyword arguments and the CLI's
flags both take their defaults from QueryOptions. Kept free of heavy imports so the CLI can read it at start."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryOptions:
    """How to search: ``model`` (None: the store's only model), ``k`` neighbours per query, ``exclude_self``
    (leave out stored copies of the query image), ``exclude_ids`` (stored row ids to leave out), ``weighting``
    of the k-NN vote (one of knn.WEIGHTS), ``head`` (a saved head file to apply), the encoder's ``device``,
    ``exact`` (search the stored vectors exactly instead of an approximate index), and ``where``: conditions on the
    stored DICOM header fields a neighbour must meet ('ViewPosition=PA', 'Modality=CR,DX', 'Laterality!=L';
    storage/header_filter.py).
    Values are checked by ``query`` before the store is read."""

    model: str | None = None
    k: int = 10
    exclude_self: bool = True
    exclude_ids: tuple[str, ...] = ()
    weighting: str = "similarity"
    head: str | None = None
    device: str = "cpu"
    exact: bool = False
    where: tuple[str, ...] = ()
