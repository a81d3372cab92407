"""A query's vector for a saved head trained on a fused model ('a+b': dvme, or lr on a fusion).

The store keeps no fused rows (evaluation.fusion builds them in memory), so the query is fused the same way:
each part's own encoder (its weights, preprocessing and views, as recorded) embeds the image, and
fusion.fuse_vectors normalises and joins the parts. Neighbours still come from the one model `query` searches.
"""
from __future__ import annotations

import numpy as np

from ..errors import MedsearchError
from ..evaluation.fusion import fuse_vectors, fused_provenance, is_fused, parts


def fused_head_model(data, head) -> tuple[int, dict] | None:
    """(dim, provenance) of the fused model a saved head was trained on, when every part is in the store;
    None for a head of a single model. No fused rows are built."""
    if not is_fused(head.model_key):
        return None
    missing = [p for p in parts(head.model_key) if p not in data.models]
    if missing:
        raise MedsearchError(f"head trained on the fused model '{head.model_key}', and this store has no model "
                             f"'{missing[0]}': query the store the head was saved from")
    return sum(int(data.models[p].dim) for p in parts(head.model_key)), fused_provenance(data, head.model_key)


def fused_queries(data, key: str, images: list[str], read, encoder_for, device: str = "cpu",
                  known: dict | None = None) -> np.ndarray:
    """The fused vectors of ``images`` for model ``key``: ``read(path, draft_size)`` decodes a query image,
    ``encoder_for(model, device=...)`` rebuilds a part's encoder from its provenance; ``known``: the images'
    embeddings by a part already computed (the model `query` searches), not encoded again."""
    blocks = []
    for part in parts(key):
        if known and part in known:
            blocks.append(known[part])
            continue
        encoder = encoder_for(data.models[part], device=device)
        batch = np.stack([encoder.prepare(read(p, encoder.preprocess.resize)) for p in images])
        blocks.append(encoder.encode(batch))
    return fuse_vectors(blocks)
