"""The journal: finished batches of one model since the last commit, one atomically written
``.journal/<model>/part-*.npz`` per batch. A run killed at any moment loses at most the batch in flight; the
next run replays the journal into the store before embedding what is still missing. A part that is unreadable,
from another store or damaged is ignored, so its rows stay pending and are embedded again."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_write_with, fsync_path, io_error
from .schema import FINISHED, JOURNAL_DIR

if TYPE_CHECKING:
    from .store import StoreData


class Journal:
    """Finished batches of one model since the last commit, one atomically written .npz per batch."""

    def __init__(self, directory: str | os.PathLike, key: str):
        self.dir = Path(directory) / JOURNAL_DIR / key
        self._next = 0

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.npz")) if self.dir.is_dir() else []

    def append(self, rows: np.ndarray, ids: list[str], embedding: np.ndarray, state: np.ndarray, reason: list[str],
               sha256: list[str] | None = None) -> None:
        """Journal one finished batch; ``sha256``: content fingerprints taken while embedding (rows read from a
        URI), replayed with the batch."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(exc, self.dir) from None
        if self._next == 0:
            existing = self.parts()
            self._next = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
        target = self.dir / f"part-{self._next:09d}.npz"
        self._next += 1

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                extra = {"sha256": np.array(sha256, dtype=str)} if sha256 else {}
                np.savez(fh, rows=rows.astype(np.int64), ids=np.array(ids, dtype=str),
                         embedding=embedding.astype(np.float32), state=state.astype(np.int8),
                         reason=np.array(reason, dtype=str), **extra)

        atomic_write_with(target, write)

    def replay(self, data: StoreData, key: str) -> int:
        """Apply every valid part to ``data.models[key]``; returns the number of rows applied."""
        model, applied = data.models[key], 0
        for part in self.parts():
            try:
                with np.load(part, allow_pickle=False) as z:
                    rows, ids, emb, state, reason = (z["rows"], z["ids"], z["embedding"], z["state"], z["reason"])
                    sha = z["sha256"] if "sha256" in z.files else None
            except (OSError, ValueError, KeyError):
                continue  # an unreadable part is ignored: its rows stay pending and get embedded again
            if (emb.ndim != 2 or emb.shape != (len(rows), model.dim) or len(ids) != len(rows)
                    or state.shape != rows.shape or len(reason) != len(rows)
                    or (sha is not None and (len(sha) != len(rows) or not all(_is_sha256(str(h)) for h in sha)))
                    or rows.dtype.kind not in "iu" or rows.min(initial=0) < 0 or rows.max(initial=-1) >= len(data)
                    or any(data.ids[r] != i for r, i in zip(rows, ids))):
                continue  # not from this store (or this store's rows): never trust it
            if emb.dtype.kind != "f" or not np.isfinite(emb).all() or not np.isin(state, FINISHED).all():
                continue  # a damaged part would make the store unwritable: its rows are embedded again
            model.embedding[rows] = emb
            model.state[rows] = state
            for r, why in zip(rows, reason):
                model.reason[r] = str(why)
            model.touch(rows)
            if sha is not None and data.sha256 is not None:
                for r, h in zip(rows.tolist(), sha):
                    if h and data.sha256[r] != str(h):
                        data.sha256[r] = str(h)
                        data.touch(r)
            applied += len(rows)
        return applied

    def clear(self) -> None:
        """Remove the committed parts, and the temporary files of parts whose write was killed half way."""
        for part in self.parts() + (sorted(self.dir.glob(".part-*.npz.tmp-*")) if self.dir.is_dir() else []):
            part.unlink(missing_ok=True)
        if self.dir.is_dir():
            fsync_path(self.dir)


def _is_sha256(h: str) -> bool:
    return h == "" or (len(h) == 64 and all(c in "0123456789abcdef" for c in h))
