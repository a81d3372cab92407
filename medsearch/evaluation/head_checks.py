"""How a store's model differs from what a saved head was trained on: one phrase per difference.

Shared by the linear heads and the network heads (heads.LinearHead, network_head.NetworkHead).
"""
from __future__ import annotations

import json

from ..display import printable

# what makes two models' embeddings the same (as `medsearch index` compares a model it is asked to extend)
ENCODER_FIELDS = ("encoder", "weights_sha256", "weights_source", "preprocess", "dim")


def encoder_fields(provenance: dict) -> dict:
    """The part of a model's provenance (medsearch.storage.store.provenance) that decides what its embeddings mean;
    for a fused model (evaluation.fusion), each part's, by part."""
    if isinstance(provenance, dict) and isinstance(provenance.get("parts"), dict):
        return {"parts": {part: encoder_fields(prov) for part, prov in provenance["parts"].items()}}
    return {key: provenance.get(key) for key in ENCODER_FIELDS}


def is_encoder_record(record) -> bool:
    """Whether a saved head's encoder record has encoder_fields' shape: one model's fields, or 2+ parts' fields."""
    if isinstance(record, dict) and set(record) == {"parts"}:
        parts = record["parts"]
        return isinstance(parts, dict) and len(parts) >= 2 and all(map(is_encoder_record, parts.values())) \
            and not any("parts" in fields for fields in parts.values())
    return isinstance(record, dict) and set(record) == set(ENCODER_FIELDS)


def head_mismatches(head, *, task: str, label_names, model_key: str, dim: int) -> list[str]:
    """The differences in model key, task, classes (by name and in order) and dimension."""
    out = []
    if model_key != head.model_key:
        out.append(f"it was trained on '{head.model_key}' embeddings, not '{model_key}'")
    if task != head.task:
        out.append(f"it was trained for a {head.task} task, this store's is {task}")
    names = [str(n) for n in label_names]
    if names != head.label_names:
        out.append(f"it was trained on {_names(head.label_names)}; this store has {_names(names)}"
                   + _first_difference(head.label_names, names))
    if int(dim) != head.dim:
        out.append(f"it takes {head.dim}-dimensional embeddings, this model's are {int(dim)}-dimensional")
    return out


def encoder_mismatches(trained: dict, provenance: dict, where: str = "") -> list[str]:
    """The differences between the ENCODER_FIELDS a head recorded and a model's provenance (``where``: which
    part of a fused model, for the phrase); a head of a fused model is compared part by part."""
    if isinstance(trained, dict) and isinstance(trained.get("parts"), dict):
        have = provenance.get("parts") if isinstance(provenance, dict) else None
        if not isinstance(have, dict) or list(have) != list(trained["parts"]):
            return [f"it was trained on the fusion of {', '.join(trained['parts'])}"]
        return [text for part, fields in trained["parts"].items()
                for text in encoder_mismatches(fields, have[part], where=f" of {part}")]
    have = encoder_fields(provenance)
    return [f"its embeddings{where} were made with another {key.replace('_', ' ')} "
            f"({_short(trained.get(key))} vs this store's {_short(have.get(key))})"
            for key in ENCODER_FIELDS if key != "dim" and have.get(key) != trained.get(key)]


def _names(names, shown: int = 10) -> str:
    """'classes a, b, c' on one line; a long list is cut after ``shown`` names."""
    text = ", ".join(printable(str(n)) for n in names[:shown]) or "(none)"
    return f"classes {text}" if len(names) <= shown else f"{len(names)} classes {text}, ..."


def _first_difference(a: list[str], b: list[str], shown: int = 10) -> str:
    """Where two long class lists part, when the cut lists of _names would not show it."""
    if len(a) <= shown and len(b) <= shown:
        return ""
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if i >= min(len(a), len(b)):
        return f" (the same first {i} names)"
    return f" (first difference at class {i + 1}: {printable(a[i])} vs {printable(b[i])})"


def _short(value) -> str:
    text = printable(json.dumps(value, sort_keys=True))
    return text if len(text) <= 80 else text[:77] + "..."
