"""medsearch: a medical-image vector database. Embed once into HDF5, index with FAISS, then retrieve similar cases,
vote with k-NN, and train the linear heads of "Embeddings are all you need!" (arXiv 2412.09445) on the same store.

The public API is the names in ``__all__``. They load on first use, so ``import medsearch`` (and the CLI's start-up)
does not pay for torch, FAISS or scikit-learn until a command needs them.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_HOMES = {
    # ingest: a dataset folder into a store
    "index_dataset": "medsearch.ingest.indexing",
    "IndexOptions": "medsearch.ingest.index_options",
    "IndexSummary": "medsearch.ingest.index_summary",
    "load_encoder": "medsearch.ingest.encoders",
    "list_encoders": "medsearch.ingest.encoders",
    "compact": "medsearch.ingest.compact",
    # storage: what a store holds
    "read_store": "medsearch.storage.store",
    "store_summary": "medsearch.storage.summary",
    "StoreSummary": "medsearch.storage.summary",
    # search: similar cases and their vote
    "query": "medsearch.search.query",
    "QueryOptions": "medsearch.search.query_options",
    "QueryResult": "medsearch.search.query_results",
    "KNNVoter": "medsearch.search.knn",
    # evaluation: how good the embeddings are
    "evaluate": "medsearch.evaluation.evaluate",
    "EvalOptions": "medsearch.evaluation.eval_options",
    "EvalResult": "medsearch.evaluation.eval_results",
    "load_head": "medsearch.evaluation.heads",
    "MedsearchError": "medsearch.errors",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'medsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
