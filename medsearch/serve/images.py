"""Stored images for thumbnails and queries by id: always found from the store's own row (its source under the
dataset root or its URI, or its array in the .npz the store was built from), never from a path a client sent."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..ingest.images import array_to_image
from ..ingest.dicom.pixel_options import pixel_options_of
from ..ingest.sources import open_stored_file
from .errors import HttpError
from .service import Snapshot

THUMB_SIZES = (64, 96, 128, 160, 192, 256, 384, 512, 768, 1024)
_npz_lock = threading.Lock()


def stored_image(snap: Snapshot, row: int, *, draft_size: int | None = None) -> Image.Image:
    """The image of stored ``row``, decoded with `index`'s guards; 404 when it cannot be read any more."""
    data = snap.data
    root, source = data.attrs.get("dataset_root", ""), data.sources[row]
    try:
        if root.endswith(".npz"):
            return array_to_image(_npz_image(snap, root, source))
        return open_stored_file(root, source, draft_size=draft_size, pixels=pixel_options_of(data.attrs))
    except (ImageError, KeyError, ValueError, OSError) as exc:
        raise HttpError(404, f"the image of stored case '{data.ids[row][:120]}' cannot be read ({exc}): the "
                             "dataset may have moved since it was indexed") from None


def _npz_image(snap: Snapshot, root: str, source: str) -> np.ndarray:
    split, j = source.rsplit("/", 1)
    with _npz_lock:
        if split not in snap.npz_arrays:
            with np.load(root, allow_pickle=False) as z:
                snap.npz_arrays[split] = z[f"{split}_images"]
    return snap.npz_arrays[split][int(j)]


def png_bytes(img: Image.Image, size: int) -> bytes:
    """``img`` scaled down to fit ``size`` x ``size`` (never up: the page scales small images), as PNG."""
    img = img.copy()
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def snap_size(size: int) -> int:
    """The allowed thumbnail size nearest above ``size`` (a few fixed sizes keep the cache small)."""
    return next((s for s in THUMB_SIZES if s >= size), THUMB_SIZES[-1])


class ThumbCache:
    """PNG thumbnails by (generation, row, size), least recently used dropped past ``max_items``."""

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, snap: Snapshot, row: int, size: int) -> bytes:
        key = (snap.generation, row, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        png = png_bytes(stored_image(snap, row, draft_size=size), size)
        with self._lock:
            self._items[key] = png
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return png
