"""A reader while `index` commits sees whole snapshots; a second writer on the same store is refused. On format 2
a reader keeps the snapshot it opened while a writer commits, merges the tail and compacts (deleting the
segments it has open), and a reader opening during a compaction retries."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.lock import WriterLock
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store, store_exists

from ..conftest import needs_shared, store_files
from ..crash_harness import index_cmd, symlink_subset

MODEL = "efficientnet-lite0"


def test_reader_sees_consistent_snapshots(tmp_path):
    data = symlink_subset(needs_shared("breast-busi"), tmp_path / "busi", per_class=10)
    out = tmp_path / "out"
    extra = ["--model", MODEL, "--batch-size", "2", "--commit-every", "0", "--resize", "96", "--crop", "96"]
    writer = subprocess.Popen(index_cmd(data, out, extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    snapshots = []
    try:
        while writer.poll() is None:
            if store_exists(out):
                try:
                    d = read_store(out)  # must never fail or see a half-written store
                except MedsearchError as exc:
                    raise AssertionError(f"reader saw a broken store: {exc}")
                if MODEL in d.models:
                    m = d.models[MODEL]
                    snapshots.append(int((m.state == EMBEDDED).sum()))
                    done = m.state == EMBEDDED
                    assert np.abs(m.embedding[done]).sum(1).min(initial=1) > 0  # embedded rows hold real vectors
                    assert (m.embedding[~done] == 0).all()
            time.sleep(0.05)
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0, writer.stderr.read()[-500:]
    assert snapshots == sorted(snapshots) and len(set(snapshots)) >= 2  # progress seen, never going back
    assert (read_store(out).models[MODEL].state == EMBEDDED).all()


def test_second_writer_is_refused_and_store_kept(tmp_path):
    data = symlink_subset(needs_shared("breast-busi"), tmp_path / "busi", per_class=2)
    out = tmp_path / "out"
    extra = ["--model", MODEL, "--resize", "96", "--crop", "96"]
    subprocess.run(index_cmd(data, out, extra), check=True, capture_output=True, timeout=300)
    before = store_files(out)
    with WriterLock(out):  # a writer holds the store, for as long as the second one tries
        second = subprocess.run(index_cmd(data, out, extra), capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    assert second.stderr.splitlines()[-1].startswith(f"medsearch: error: another medsearch process (pid {os.getpid()})")
    assert store_files(out) == before


# ---- format 2: a reader keeps its snapshot while a writer commits, merges the tail and compacts ----------------

def _snapshot_answers(data, queries):
    """Exact neighbours of ``queries`` over the reader's own snapshot, through the library's search (what
    `query --exact` does): built from the embeddings the reader reads by row from its open segments."""
    from medsearch.storage.embeddings import RowsView
    from medsearch.storage.faiss_index import FLAT, build_index, search

    m = data.models["tiny"]
    usable = m.usable()
    sims, rows = search(build_index(RowsView(m.embedding, usable), usable, FLAT), queries, 5)
    return rows.tolist(), np.round(sims, 5).tolist()


class _Reader:
    """A store opened once; ``check`` asserts it still reads what it read when opened."""

    def __init__(self, out):
        self.data = read_store(out)
        m = self.data.models["tiny"]
        self.ids, self.state = list(self.data.ids), m.state.copy()
        self.embedding = np.asarray(m.embedding).copy()
        self.files = [f.path for f in self.data.origin.files]
        self.queries = self.embedding[[0, len(self.ids) // 2]] + 0.01
        self.answers = _snapshot_answers(self.data, self.queries)

    def check(self, rng):
        m = self.data.models["tiny"]
        rows = rng.choice(len(self.ids), size=min(6, len(self.ids)), replace=False)
        assert np.array_equal(m.embedding[rows], self.embedding[rows])  # read by row, now
        assert np.array_equal(np.asarray(m.embedding), self.embedding)
        assert self.data.ids == self.ids and np.array_equal(m.state, self.state)
        assert _snapshot_answers(self.data, self.queries) == self.answers


def _tiny_dataset(root, lo, hi):
    from ..conftest import make_image

    for c, name in enumerate(("benign", "malignant")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(lo, hi):
            make_image(root / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    return root


def test_reader_keeps_its_snapshot_through_commits_tail_merges_and_compaction(tmp_path, tiny):
    from medsearch.ingest.compact import compact
    from medsearch.storage.segmented import MAX_TAIL

    from ..conftest import index_tiny

    ds, out = _tiny_dataset(tmp_path / "ds", 0, 6), tmp_path / "idx"
    index_tiny(ds, out)
    reader, rng = _Reader(out), np.random.default_rng(0)
    _tiny_dataset(ds, 6, 6 + MAX_TAIL + 2)  # rows for more than MAX_TAIL commits of one batch each
    index_tiny(ds, out, commit_every=0, batch_size=2)
    assert not all(p.exists() for p in reader.files)  # the tail merge deleted segments the reader has open
    reader.check(rng)
    for name in ("benign", "malignant"):
        (ds / name / f"{name}_01.png").unlink()
    index_tiny(ds, out, auto_compact=False)  # rows removed, still in the files
    reader.check(rng)
    compact(str(out))  # every segment rewritten: the reader's files are deleted under it
    assert not any(p.exists() for p in reader.files)
    reader.check(rng)
    now = read_store(out)
    assert len(now) == len(reader.ids) + 2 * (MAX_TAIL + 2) - 2


def test_reader_keeps_its_snapshot_while_another_process_writes(tmp_path, tiny):
    """The writer is another process (`index` committing every batch, then `compact`); the reader polls."""
    from ..conftest import REPO, index_tiny

    ds, out = _tiny_dataset(tmp_path / "ds", 0, 6), tmp_path / "idx"
    index_tiny(ds, out)
    reader, rng = _Reader(out), np.random.default_rng(1)
    _tiny_dataset(ds, 6, 16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    harness = [sys.executable, "-m", "tests.crash_harness", "--log", str(tmp_path / "writes.log")]
    runs = [["--tiny", "--", "index", str(ds), "--out", str(out), "--model", "tiny", "--quiet", "--commit-every",
             "0", "--batch-size", "2"], ["--", "compact", str(out)]]
    seen = []
    for args in runs:
        writer = subprocess.Popen(harness + args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while writer.poll() is None:
                reader.check(rng)
                fresh = read_store(out)  # a reader opening now sees a whole store, never a broken one
                seen.append(len(fresh))
                assert fresh.ids[:len(reader.ids)] == reader.ids
                time.sleep(0.1)
        finally:
            writer.wait(timeout=120)
        assert writer.returncode == 0, writer.stderr.read()[-500:]
    reader.check(rng)
    assert not any(p.exists() for p in reader.files)
    assert seen and len(read_store(out)) == 32 and seen == sorted(seen)


def test_a_reader_opening_during_a_compaction_retries_and_succeeds(tmp_path, tiny, monkeypatch):
    import medsearch.storage.segmented as segmented
    from medsearch.ingest.compact import compact

    from ..conftest import index_tiny

    ds, out = _tiny_dataset(tmp_path / "ds", 0, 6), tmp_path / "idx"
    index_tiny(ds, out)
    real = segmented.SegmentFile
    swaps = []

    def opening(path, *a, **k):
        if not swaps:  # the reader has read the manifest: a compaction swaps it and deletes its segments now
            swaps.append(path)
            compact(str(out))
        return real(path, *a, **k)

    monkeypatch.setattr(segmented, "SegmentFile", opening)
    data = read_store(out)
    assert swaps and not swaps[0].exists()  # the segment it was about to open was gone
    assert len(data) == 12 and [f.path.exists() for f in data.origin.files] == [True] * len(data.origin.files)
    assert data.origin.manifest.generation == read_store(out).origin.manifest.generation


def test_a_reader_gives_up_with_one_line_when_the_store_keeps_changing(tmp_path, tiny, monkeypatch):
    import medsearch.storage.segmented as segmented

    from ..conftest import index_tiny

    ds, out = _tiny_dataset(tmp_path / "ds", 0, 3), tmp_path / "idx"
    index_tiny(ds, out)

    def always_gone(path, *a, **k):  # every time it opens a segment, another compaction has just swapped the manifest
        manifest = out / "store.json"
        raw = json.loads(manifest.read_text())
        raw["generation"] += 1
        manifest.write_text(json.dumps(raw))
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(segmented, "SegmentFile", always_gone)
    with pytest.raises(MedsearchError, match="changed five times") as info:
        read_store(out)
    assert "\n" not in str(info.value)


def test_a_segment_deleted_inside_hdf5s_open_is_a_compaction_not_damage(tmp_path, tiny, monkeypatch):
    """HDF5 reports a file deleted between its open and its stat as a plain OSError ("can't retrieve stat info"),
    not FileNotFoundError: the reader must still retry on the new manifest, not call the store damaged."""
    import h5py

    import medsearch.storage.segments as segments
    from medsearch.ingest.compact import compact

    from ..conftest import index_tiny

    ds, out = _tiny_dataset(tmp_path / "ds", 0, 6), tmp_path / "idx"
    index_tiny(ds, out)
    real_file = h5py.File
    swaps = []

    def racing(path, *a, **k):
        if not swaps:  # HDF5 has begun to open the segment; a compaction deletes it before the stat
            swaps.append(path)
            compact(str(out))
            raise OSError("Unable to synchronously open file (can't retrieve stat info for file)")
        return real_file(path, *a, **k)

    monkeypatch.setattr(segments.h5py, "File", racing)
    data = read_store(out)
    monkeypatch.setattr(segments.h5py, "File", real_file)
    assert swaps and not swaps[0].exists()
    assert len(data) == 12 and data.origin.manifest.generation == read_store(out).origin.manifest.generation
