"""Published AUCs to compare against, kept as data with their sources (medsearch/data/paper_reference.json).

Khoiwal & McMillan (arXiv:2412.09445) Table 2 for HAM10000, PAD-UFES-20, ODIR, CBIS-DDSM and CheXpert,
and MedMNIST v2 (Yang et al. 2023) Table 3 for RetinaMNIST and BreastMNIST. Figures we could not
verify are None with a note saying so. ``anchor_for`` maps our dataset keys to the nearest reference.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from medsearch.errors import MedsearchError

REFERENCE_FILE = Path(__file__).parents[1] / "data" / "paper_reference.json"


@lru_cache(maxsize=1)
def _load() -> dict:
    with open(REFERENCE_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def reference_names() -> list[str]:
    return [entry["name"] for entry in _load()["datasets"]]


def anchor_for(dataset: str) -> dict | None:
    """{'reference': name, 'note': how close it is} for one of our dataset keys, or None."""
    anchor = _load()["anchors"].get(dataset.strip().lower())
    return dict(anchor) if anchor else None


def reference_table(name: str) -> list[dict]:
    """Rows for a reference dataset (case-insensitive; our dataset keys with an anchor also work).

    Each row: dataset, kind ('benchmark' | 'embedding' | 'trained-cnn'), model, head, auc (None when
    not recorded), source (full citation), table, note.
    """
    data = _load()
    wanted = name.strip().lower()
    anchor = data["anchors"].get(wanted)
    if anchor:
        wanted = anchor["reference"].lower()
    for entry in data["datasets"]:
        if entry["name"].lower() == wanted:
            return [
                {"dataset": entry["name"], **row, "source": data["sources"][row["source"]]}
                for row in entry["rows"]
            ]
    known = ", ".join(reference_names() + sorted(data["anchors"]))
    raise MedsearchError(f"no reference figures for {name!r}; known names: {known}")
