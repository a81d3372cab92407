"""Compaction of a format-2 store (storage/compaction.py), with write_store / commit_store directly: the tail
merge keeps every value (the latest of each row) under the same row numbers, compact_rows drops removed rows
and renumbers the rest, dead_entries counts what no read uses, and a store built by many small commits reads
exactly like the same rows written whole."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from medsearch.ingest.compact import needs_compaction
from medsearch.storage.compaction import compact_rows, dead_entries, merge_tail
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.segmented import MAX_TAIL
from medsearch.storage.store import ModelData, StoreData, commit_store, read_store, write_store

from ..conftest import make_store

pytestmark = pytest.mark.usefixtures("one_blas_thread")
DIM = 8


class Twin:
    """A store read lazily from ``out`` (committed incrementally) and the same rows kept as plain arrays in
    memory (the truth): every change is made to both."""

    def __init__(self, out, fingerprints=True):
        self.out = out
        self.data = read_store(out)
        d = self.data
        if fingerprints:  # the optional columns too, so that merges must carry them
            d.sha256 = [f"{i:064x}" for i in range(len(d))]
            d.file_stat = np.column_stack([np.arange(len(d)), np.arange(len(d)) * 10]).astype(np.int64)
            write_store(d, out)
        m = d.models["m1"]
        self.truth = StoreData(list(d.ids), list(d.sources), d.labels.copy(), list(d.label_names), d.task,
                               None if d.groups is None else list(d.groups),
                               None if d.splits is None else list(d.splits), attrs=dict(d.attrs),
                               sha256=None if d.sha256 is None else list(d.sha256),
                               file_stat=None if d.file_stat is None else d.file_stat.copy())
        self.truth.models["m1"] = ModelData(np.asarray(m.embedding).copy(), m.state.copy(), list(m.reason),
                                            copy.deepcopy(m.attrs))
        self.rng = np.random.default_rng(0)

    def append(self, rid):
        label, vec = int(self.rng.integers(3)), self.rng.normal(size=DIM).astype(np.float32)
        for d in (self.data, self.truth):
            n = len(d)
            d.ids.append(rid)
            d.sources.append(f"src/{rid}")
            d.labels = np.concatenate([d.labels, [label]]).astype(d.labels.dtype)
            for name, value in (("groups", f"p-{rid}"), ("splits", "train"), ("sha256", "")):
                if getattr(d, name) is not None:
                    getattr(d, name).append(value)
            if d.file_stat is not None:
                d.file_stat = np.vstack([d.file_stat, [[-1, -1]]]).astype(np.int64)
            if d.removed is not None:
                d.removed = np.concatenate([d.removed, [False]])
            m = d.models["m1"]
            if isinstance(m.embedding, np.ndarray):
                m.embedding = np.vstack([m.embedding, vec[None]])
            else:
                m.embedding.grow(1)
                m.embedding[n] = vec
            m.state = np.concatenate([m.state, [EMBEDDED]]).astype(np.int8)
            m.reason.append("")
            d.touch(n)
            m.touch(n)

    def relabel(self, row):
        label = (int(self.truth.labels[row]) + 1) % 3
        for d in (self.data, self.truth):
            d.labels[row] = label
            d.touch(row)

    def reembed(self, row):
        vec = self.rng.normal(size=DIM).astype(np.float32)
        for d in (self.data, self.truth):
            d.models["m1"].embedding[row] = vec
            d.models["m1"].reason[row] = f"re-embedded {vec[0]:.3f}"
            d.models["m1"].touch(row)

    def remove(self, row):
        for d in (self.data, self.truth):
            removed = d.is_removed().copy()
            removed[row] = True
            d.removed = removed
            d.touch(row)

    def commit(self):
        commit_store(self.data, self.out)


def _same(a: StoreData, b: StoreData) -> None:
    """Two stores hold the same rows, columns and model entries."""
    assert a.ids == b.ids and a.sources == b.sources
    assert np.array_equal(a.labels, b.labels)
    assert (a.groups, a.splits, a.sha256) == (b.groups, b.splits, b.sha256)
    assert (a.file_stat is None) == (b.file_stat is None)
    assert a.file_stat is None or np.array_equal(a.file_stat, b.file_stat)
    assert np.array_equal(a.is_removed(), b.is_removed())
    ma, mb = a.models["m1"], b.models["m1"]
    assert np.array_equal(ma.state, mb.state) and ma.reason == mb.reason
    assert np.array_equal(np.asarray(ma.embedding), np.asarray(mb.embedding))
    assert ma.attrs.get("provenance") == mb.attrs.get("provenance")


def _files(out):
    return sorted(p.name for p in (out / "segments").iterdir())


def _listed(out):
    return [s.file for s in read_store(out).origin.manifest.segments]


def test_tail_merge_keeps_every_value_and_row_numbers(tmp_path):
    out = make_store(tmp_path / "s", n=20, dim=DIM, groups_of=2, official=True)
    twin = Twin(out)
    counts = []
    for i in range(MAX_TAIL + 4):
        twin.reembed(0)               # the same row in every segment: the latest must win
        twin.relabel(1 + i % 5)
        twin.reembed(3 + i % 7)
        if i % 2:
            twin.append(f"new{i:02d}")
        twin.commit()
        counts.append(len(_listed(out)))
        _same(read_store(out), twin.truth)
        _same(twin.data, twin.truth)  # the writer's own copy stands on the new segments too
        assert _files(out) == _listed(out)  # merged segments deleted
    assert max(counts) == MAX_TAIL and min(counts[MAX_TAIL - 1:]) < MAX_TAIL  # merged once the tail was too long


def test_merge_tail_merges_only_a_tail_longer_than_max_tail(tmp_path, monkeypatch):
    import medsearch.storage.compaction as compaction

    out = make_store(tmp_path / "s", n=10, dim=DIM)
    twin = Twin(out, fingerprints=False)
    monkeypatch.setattr(compaction, "MAX_TAIL", 100)  # the commits below leave their segments alone
    for i in range(5):
        twin.reembed(i)
        twin.relabel(i)
        twin.commit()
    assert len(_listed(out)) == 6
    monkeypatch.setattr(compaction, "MAX_TAIL", 6)
    assert merge_tail(twin.data, out) is False  # 6 segments: not more than MAX_TAIL
    monkeypatch.setattr(compaction, "MAX_TAIL", 5)
    assert merge_tail(twin.data, out) is True
    assert len(_listed(out)) == 1 and _files(out) == _listed(out)
    _same(read_store(out), twin.truth)
    _same(twin.data, twin.truth)


def test_compact_rows_drops_removed_rows_and_renumbers(tmp_path):
    out = make_store(tmp_path / "s", n=20, dim=DIM, groups_of=2)
    twin = Twin(out)
    twin.reembed(4)
    for row in (3, 7, 8, 19):
        twin.remove(row)
    twin.commit()
    assert dead_entries(read_store(out)) > 0
    data = read_store(out)
    before_ids, before_emb = list(data.ids), np.asarray(data.models["m1"].embedding)
    keep = compact_rows(data, out)
    assert keep.tolist() == [r for r in range(20) if r not in (3, 7, 8, 19)]
    after = read_store(out)
    assert after.ids == [before_ids[r] for r in keep] and after.removed is None
    assert np.array_equal(np.asarray(after.models["m1"].embedding), before_emb[keep])
    assert after.groups == [twin.truth.groups[r] for r in keep]
    assert after.sha256 == [twin.truth.sha256[r] for r in keep]
    assert np.array_equal(after.file_stat, twin.truth.file_stat[keep])
    assert dead_entries(after) == 0 and _files(out) == _listed(out)
    stored = b"".join((out / "segments" / f).read_bytes() for f in _files(out)) + (out / "store.json").read_bytes()
    for r in (3, 7, 8, 19):  # withdrawn rows leave the files, not only the search
        assert before_ids[r].encode() not in stored


def test_dead_entries_counts_superseded_and_removed_entries(tmp_path):
    out = make_store(tmp_path / "s", n=60, dim=DIM)
    twin = Twin(out, fingerprints=False)
    assert dead_entries(read_store(out)) == 0 and not needs_compaction(read_store(out))
    for row in (1, 2, 3):
        twin.relabel(row)             # 3 row entries superseded
    twin.commit()
    assert dead_entries(read_store(out)) == 3
    twin.reembed(4)
    twin.reembed(5)                   # 2 model entries superseded
    twin.commit()
    assert dead_entries(read_store(out)) == 5 and not needs_compaction(read_store(out))
    twin.remove(6)                    # its row entry superseded, and the row itself dead
    twin.commit()
    assert dead_entries(read_store(out)) == 7 and needs_compaction(read_store(out))  # 7 > 10% of 60
    twin.append("new")                # a new row is live: nothing dead added
    twin.commit()
    assert dead_entries(read_store(out)) == 7
    assert dead_entries(twin.data) == 7  # the writer's copy counts the same
    compact_rows(twin.data, out)
    assert dead_entries(read_store(out)) == 0


def test_fifty_small_commits_read_like_one_whole_write(tmp_path):
    out = make_store(tmp_path / "s", n=10, dim=DIM, groups_of=2, official=True)
    twin = Twin(out)
    for i in range(50):
        twin.append(f"row{i:03d}")
        twin.relabel(i % 7)
        twin.reembed((5 * i) % (10 + i))
        if i % 9 == 4:
            twin.remove(i + 3)
        twin.commit()
        assert len(_listed(out)) <= MAX_TAIL  # a reader opens a bounded number of files
    whole = tmp_path / "whole"
    whole.mkdir()
    write_store(twin.truth, whole)
    _same(read_store(out), read_store(whole))
    _same(read_store(out), twin.truth)
    assert _files(out) == _listed(out)
