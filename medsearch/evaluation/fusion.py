"""Fusion of several encoders of one store: 'lite0+mobilenet-v2' as one more model to evaluate.

Each part's embedding is L2-normalised per row and the parts are concatenated and divided by sqrt(m), so a
fused vector has unit length (a zero-filled row stays zero) and the inner product of two fused vectors is
the mean of the parts' cosine similarities: the k-NN vote and retrieval rank by that mean, and the heads see
every part's features (standardised per feature as usual). Built in memory from the stored
embeddings; the store itself is not changed. A row is usable only where every part has an embedding.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import MedsearchError
from ..storage.schema import EMBEDDED, SKIPPED
from ..storage.store import ModelData, StoreData, provenance

SEPARATOR = "+"


def is_fused(key: str) -> bool:
    return SEPARATOR in key


def parts(key: str) -> list[str]:
    """The stored models a fused key names, in column order ('a+b' -> ['a', 'b']); an unfused key is one part."""
    return [part.strip() for part in key.split(SEPARATOR)]


def block_dims(data: StoreData, key: str) -> tuple[int, ...]:
    """The width of each part's columns in the fused model ``key`` (fused or not) of ``data``."""
    return tuple(int(data.models[part].dim) for part in parts(key))


def fuse(data: StoreData, key: str) -> ModelData:
    """The fused model named ``key`` ('a+b[+c...]', each part a model of ``data``)."""
    names = parts(key)
    if len(names) < 2 or any(not part for part in names) or len(set(names)) < len(names):
        raise MedsearchError(f"fused model {key!r}: join two or more different stored models with '+', "
                             f"e.g. {'+'.join(list(data.models)[:2]) or 'efficientnet-lite0+mobilenet-v2'}")
    models = [data.model(part)[1] for part in names]  # an unknown part -> the store's own message
    masks = []
    for model in models:
        mask = np.zeros(len(data), dtype=bool)
        mask[model.usable()] = True
        masks.append(mask)
    usable = np.logical_and.reduce(masks)
    embedding = fuse_vectors([model.embedding for model in models])
    reason = [""] * len(data)
    for i in np.flatnonzero(~usable):
        reason[i] = "no embedding from " + ", ".join(p for p, mask in zip(names, masks) if not mask[i])
    state = np.where(usable, EMBEDDED, SKIPPED).astype(np.int8)
    return ModelData(embedding, state, reason, {"provenance": json.dumps(fused_provenance(data, key))})


def fuse_vectors(blocks) -> np.ndarray:
    """Each part's rows ((n, d_i) arrays, in column order) L2-normalised, concatenated, divided by sqrt(parts):
    the stored rows of a fused model, and a query's vector for a head trained on one (search.fused_query)."""
    normalised = []
    for block in blocks:
        E = np.asarray(block, dtype=np.float64)
        norms = np.linalg.norm(E, axis=1, keepdims=True)
        normalised.append(np.divide(E, norms, out=np.zeros_like(E), where=norms > 0))
    return (np.hstack(normalised) / np.sqrt(len(normalised))).astype(np.float32)


def fused_provenance(data: StoreData, key: str) -> dict:
    """The provenance of the fused model ``key``: how it is made, and each part's own provenance."""
    return {"fusion": "L2-normalised parts concatenated / sqrt(parts)",
            "parts": {p: provenance(data.model(p)[1]) for p in parts(key)}}
