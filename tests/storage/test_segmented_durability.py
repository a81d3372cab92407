"""Durability of a format-2 store (docs/STORE.md, README "Guarantees"): a SIGKILL at any write of `index`
(rows appended over many commits, with tail merges) or of `compact` leaves a store that opens, holds a
consistent prefix and never answers wrongly, and a re-run ends with the store an uninterrupted run makes; a
full disk during a commit, a tail merge or a compaction is one line and loses nothing; segment files no
manifest lists are never read and are removed by the next writer.

Kills land at exact writes (tests/crash_harness.py numbers every atomic write of a clean run and kills a child
process before one, with its temporary file half written, or right after its rename); the child uses the
TinyEncoder, so that a trial costs a process start, not a network."""
from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess

import numpy as np
import pytest

import medsearch.storage.manifest as manifest_module
import medsearch.storage.segments as segments_module
from medsearch.errors import MedsearchError
from medsearch.ingest.compact import compact
from medsearch.search.query import query
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.segmented import MAX_TAIL
from medsearch.storage.store import read_store

from ..conftest import index_tiny, make_image, run_cli, store_files
from ..crash_harness import crash_run, install_write_probe, read_write_log

pytestmark = pytest.mark.usefixtures("one_blas_thread")
CLASSES = ("benign", "malignant")


def _add_images(ds, lo, hi):
    for c, name in enumerate(CLASSES):
        (ds / name).mkdir(parents=True, exist_ok=True)
        for i in range(lo, hi):
            make_image(ds / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    return ds


def _index_args(ds, out):
    # one commit per batch of two: many small segments, so the tail is merged twice in one run
    return ["index", ds, "--out", out, "--model", "tiny", "--quiet", "--commit-every", "0", "--batch-size", "2"]


def _probes(ds):
    return [ds / "benign" / "benign_01.png", ds / "malignant" / "malignant_04.png"]


def _answers(out, probes, exact=False):
    """Neighbour ids and similarities of each probe, or the one-line error the store answers with."""
    try:
        res = query([str(p) for p in probes], index_dir=str(out), k=8, exclude_self=False, exact=exact)
    except MedsearchError as exc:
        assert "\n" not in str(exc)
        return None
    return [[(n.id, round(n.similarity, 5)) for n in r.neighbours] for r in res]


def _snapshot(out) -> dict:
    """Everything a store holds that a read can see (not its timestamps), for equality with another store."""
    d = read_store(out)
    m = d.models["tiny"]
    return {"ids": d.ids, "sources": d.sources, "labels": d.labels.tolist(), "removed": d.is_removed().tolist(),
            "sha256": d.sha256, "state": m.state.tolist(), "reason": m.reason,
            "embedding": np.asarray(m.embedding).round(6).tolist(), "usable": m.usable().tolist(),
            "index_current": m.index_is_current()}


def _listed_only(out):
    """The segments folder holds exactly the files the manifest lists (no orphan, no temporary file)."""
    listed = {s.file for s in read_store(out).origin.manifest.segments}
    assert set(os.listdir(out / "segments")) == listed


def _check_partial(out, clean, probes):
    """What a kill leaves: a store that opens (or none yet), rows that are a prefix of the clean run's, embedded
    rows equal to the clean run's, and a query that answers exactly or refuses in one line."""
    if not (out / "store.json").exists():
        return
    d = read_store(out)
    n = len(d)
    assert d.ids == clean.ids[:n] and d.labels.tolist() == clean.labels[:n].tolist()
    m, ref = d.models["tiny"], clean.models["tiny"]
    done = np.flatnonzero(m.state == EMBEDDED)
    assert np.array_equal(m.embedding[done], ref.embedding[done])
    got = _answers(out, probes)
    assert got is None or got == _answers(out, probes, exact=True)


def _pick(events, rng, *wanted):
    """Kill points (write number, phase): for each (file prefix, function on the stack, phase) the first such
    write, and one more at random."""
    out = []
    for prefix, func, phase in wanted:
        n = next(e["n"] for e in events if e["file"].startswith(prefix) and (func is None or func in e["stack"]))
        out.append((n, phase))
    while len(out) < len(wanted) + 1:  # and one write at random
        pick = (rng.choice(events)["n"], rng.choice(("before", "half", "after")))
        out += [] if pick in out else [pick]
    return out


def test_sigkill_at_any_write_of_index_appending_rows(tmp_path, tiny):
    ds = _add_images(tmp_path / "ds", 0, 6)
    base = tmp_path / "base"
    assert run_cli(*_index_args(ds, base)).exit_code == 0
    _add_images(ds, 6, 18)  # 24 new rows, committed two at a time
    clean_dir = tmp_path / "clean"
    shutil.copytree(base, clean_dir)
    log = tmp_path / "clean.log"
    original = install_write_probe(log)
    try:
        assert run_cli(*_index_args(ds, clean_dir)).exit_code == 0
    finally:
        import medsearch.storage.atomic as atomic
        atomic.atomic_path = original
    events = read_write_log(log)
    assert sum("merge_tail" in e["stack"] for e in events if e["file"] == "store.json") >= 1
    clean, probes = read_store(clean_dir), _probes(ds)
    want, want_answers = _snapshot(clean_dir), _answers(clean_dir, probes)
    trials = _pick(events, random.Random(14),
                   ("seg-", "reconcile", "after"),      # the new rows' segment, orphaned
                   ("seg-", "merge_tail", "half"),      # a half-written segment
                   ("store.json", "merge_tail", "after"),  # merged, the old segments not yet deleted
                   ("part-", None, "half"),             # a half-written journal part
                   ("tiny.faiss", None, "after"))       # the index updated, the manifest not yet
    for n, phase in trials:
        out = tmp_path / f"kill-{n}-{phase}"
        shutil.copytree(base, out)
        proc = crash_run(_index_args(ds, out), tmp_path / f"{out.name}.log", n, phase)
        assert proc.returncode == -signal.SIGKILL, (n, phase, proc.stderr[-500:])
        _check_partial(out, clean, probes)
        res = run_cli(*_index_args(ds, out))
        assert res.exit_code == 0, (n, phase, res.output)
        assert _snapshot(out) == want, (n, phase)
        assert _answers(out, probes) == want_answers, (n, phase)
        _listed_only(out)
        _nothing_left_behind(out)


def test_a_half_written_journal_part_is_swept_by_the_next_run(tmp_path, tiny):
    ds = _add_images(tmp_path / "ds", 0, 4)
    out = tmp_path / "idx"
    index_tiny(ds, out)
    (out / ".journal" / "tiny").mkdir(parents=True, exist_ok=True)
    (out / ".journal" / "tiny" / ".part-000000001.npz.tmp-999999").write_bytes(b"half a batch")
    _add_images(ds, 4, 5)
    index_tiny(ds, out)
    _nothing_left_behind(out)


def _with_removed_rows(tmp_path, removed=True):
    """A store of 36 rows of which 6 were deleted from the dataset (still in the files, out of every search);
    with ``removed`` False, a store of the 30 rows left."""
    ds = _add_images(tmp_path / "ds", 0, 18)
    out = tmp_path / "base"
    if removed:
        index_tiny(ds, out)
    for name in CLASSES:
        for i in (2, 5, 9):
            (ds / name / f"{name}_{i:02d}.png").unlink()
    index_tiny(ds, out, auto_compact=False)
    assert read_store(out).is_removed().sum() == (6 if removed else 0)
    return ds, out


def _clean_compaction(root, format1=False):
    """A store with removed rows (or, ``format1``, one without written back as format 1), its query answers, and an
    uninterrupted `compact` of a copy: the writes it made (numbered), what it holds and answers after."""
    from ..conftest import as_format1
    from ..crash_harness import use_tiny_encoder

    with pytest.MonkeyPatch.context() as mp:
        import medsearch.ingest.indexing as index_module
        import medsearch.search.query as query_module
        import medsearch.storage.atomic as atomic

        for module in (index_module, query_module):  # undone when the context ends
            for name in ("load_encoder", "get_spec", "preprocess_with"):
                if hasattr(module, name):
                    mp.setattr(module, name, getattr(module, name))
        use_tiny_encoder()
        ds, base = _with_removed_rows(root, removed=not format1)  # format 1 had no removed rows
        if format1:
            as_format1(base)
        probes = _probes(ds)
        before = _answers(base, probes)
        clean_dir = root / "clean"
        shutil.copytree(base, clean_dir)
        mp.setattr(atomic, "atomic_path", atomic.atomic_path)
        install_write_probe(root / "clean.log")
        assert run_cli("compact", clean_dir).exit_code == 0
        after = _answers(clean_dir, probes)
    return dict(ds=ds, base=base, probes=probes, before=before, events=read_write_log(root / "clean.log"),
                want=_snapshot(clean_dir), after=after)


@pytest.fixture(scope="module")
def compaction_run(tmp_path_factory):
    return _clean_compaction(tmp_path_factory.mktemp("compaction"))


@pytest.fixture(scope="module")
def upgrade_run(tmp_path_factory):
    return _clean_compaction(tmp_path_factory.mktemp("upgrade"), format1=True)


# (file the write is to, which of the writes to that file, phase): compaction saves each index in the new row
# numbers under a new name (tiny.g<N>.faiss), writes the segments, then swaps the manifest (store and index
# together), then deletes the old index file
COMPACT_KILLS = [("tiny.g", 1, "half"), ("tiny.g", 1, "after"), ("seg-", 1, "half"), ("seg-", 1, "after"),
                 ("store.json", 1, "half"), ("store.json", 1, "after")]


@pytest.mark.parametrize("file, nth, phase", COMPACT_KILLS, ids=[f"{f}{n}-{p}" for f, n, p in COMPACT_KILLS])
def test_sigkill_at_a_write_of_compact(compaction_run, tmp_path, tiny, file, nth, phase):
    """Killed at any write, the store answers as before or as after; a re-run ends where an uninterrupted
    compaction does, and sweeps what the killed one left (temporary files, an index file no model records)."""
    _kill_compact_and_rerun(compaction_run, tmp_path, file, nth, phase)


@pytest.mark.parametrize("file, nth, phase", COMPACT_KILLS, ids=[f"{f}{n}-{p}" for f, n, p in COMPACT_KILLS])
def test_sigkill_while_compact_upgrades_a_format1_store(upgrade_run, tmp_path, tiny, file, nth, phase):
    """The upgrade is atomic: killed before the manifest, the format-1 store.h5 answers as before."""
    _kill_compact_and_rerun(upgrade_run, tmp_path, file, nth, phase)
    assert not (tmp_path / "idx" / "store.h5").exists()


def _kill_compact_and_rerun(run, tmp_path, file, nth, phase):
    assert run["after"] == run["before"] is not None and len(run["want"]["ids"]) == 30
    n = [e["n"] for e in run["events"] if e["file"].startswith(file)][nth - 1]
    out = tmp_path / "idx"
    shutil.copytree(run["base"], out)
    proc = crash_run(["compact", out], tmp_path / "kill.log", n, phase, tiny=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-500:]
    assert len(read_store(out)) in (30, 36)  # opens: the old store, or the compacted one
    got = _answers(out, run["probes"])
    assert got is None or got == run["before"]  # never a wrong answer
    res = run_cli("compact", out)
    assert res.exit_code == 0, res.output
    assert _snapshot(out) == run["want"]
    assert _answers(out, run["probes"]) == run["before"]
    _listed_only(out)
    _nothing_left_behind(out)


def _nothing_left_behind(out, journal=True):
    """After the re-run: no temporary file of the killed run in the store folder (``journal``: its journal
    too), and no index file beyond the one each model records (the one a compaction replaced, or saved before
    its manifest swap)."""
    left = [str(p.relative_to(out)) for p in out.rglob("*")
            if ".tmp-" in p.name and (journal or ".journal" not in p.parts)]
    assert not left, left
    recorded = {m.attrs.get("index_file") for m in read_store(out).models.values()}
    assert {p.name for p in out.glob("*.faiss")} == recorded


# ---- a full disk, simulated: ENOSPC from the n-th segment or manifest write -----------------------------------

class Full:
    """Counts the segment and manifest writes; ``fail`` names the one that hits a full disk: (kind, n)."""

    def __init__(self, monkeypatch, fail=None):
        self.fail, self.count = fail, {"segment": 0, "manifest": 0}
        real_bytes, real_json = segments_module.atomic_write_bytes, manifest_module.atomic_write_json

        def segment(target, data):
            self._step("segment")
            real_bytes(target, data)

        def manifest(target, obj):
            self._step("manifest")
            real_json(target, obj)

        monkeypatch.setattr(segments_module, "atomic_write_bytes", segment)
        monkeypatch.setattr(manifest_module, "atomic_write_json", manifest)

    def _step(self, kind):
        self.count[kind] += 1
        if self.fail == (kind, self.count[kind]):
            from medsearch.storage.atomic import io_error

            raise io_error(OSError(errno.ENOSPC, "No space left on device"), kind)


def _no_temporaries(out):
    left = [p for p in [*os.listdir(out), *os.listdir(out / "segments")] if ".tmp-" in p]
    assert not left, left


@pytest.mark.parametrize("fail", [("segment", 1), ("manifest", 1)])
def test_disk_full_during_a_commit_keeps_the_store(tmp_path, tiny, monkeypatch, fail):
    ds = _add_images(tmp_path / "ds", 0, 6)
    out = tmp_path / "idx"
    index_tiny(ds, out)
    want, probes = _snapshot(out), _probes(ds)
    answers = _answers(out, probes)
    _add_images(ds, 6, 8)
    full = Full(monkeypatch, fail)
    with pytest.raises(MedsearchError, match="disk full") as info:
        index_tiny(ds, out)
    assert "\n" not in str(info.value)
    assert _snapshot(out) == want and _answers(out, probes) == answers
    _no_temporaries(out)
    full.fail = None  # space freed: the next run finishes and leaves no orphan
    index_tiny(ds, out)
    assert len(read_store(out)) == 16 and read_store(out).models["tiny"].index_is_current()
    _listed_only(out)


def _small_commits(tmp_path, count):
    """A store written whole, then ``count`` commits of one new row each (library level)."""
    from ..conftest import make_store

    out = make_store(tmp_path / "lib", n=12, dim=8)
    data = read_store(out)
    for i in range(count):
        _append_row(data, f"extra{i}", seed=i)
        from medsearch.storage.store import commit_store
        commit_store(data, out)
    return out, data


def _append_row(data, rid, seed):
    rng = np.random.default_rng(seed)
    n = len(data)
    data.ids.append(rid)
    data.sources.append(rid)
    data.labels = np.concatenate([data.labels, [seed % 3]])
    data.touch(n)
    for m in data.models.values():
        m.embedding.grow(1)
        m.state = np.concatenate([m.state, [EMBEDDED]]).astype(np.int8)
        m.reason.append("")
        m.embedding[n] = rng.normal(size=m.dim).astype(np.float32)
        m.touch(n)


@pytest.mark.parametrize("fail", [("segment", 2), ("manifest", 2)])
def test_disk_full_during_a_tail_merge_keeps_every_commit(tmp_path, monkeypatch, fail):
    out, data = _small_commits(tmp_path, MAX_TAIL - 1)  # one more commit makes the tail too long
    assert len(read_store(out).origin.manifest.segments) == MAX_TAIL
    _append_row(data, "last", seed=99)
    expected = (list(data.ids), np.asarray(data.models["m1"].embedding).copy())
    full = Full(monkeypatch, fail)
    from medsearch.storage.store import commit_store
    with pytest.raises(MedsearchError, match="disk full") as info:
        commit_store(data, out)  # the commit is made, the merge after it meets the full disk
    assert "\n" not in str(info.value) and full.count["segment"] == 2
    after = read_store(out)
    assert after.ids == expected[0] and np.array_equal(np.asarray(after.models["m1"].embedding), expected[1])
    _no_temporaries(out)
    full.fail = None
    _append_row(data, "after", seed=100)
    commit_store(data, out)  # space freed: the next commit merges the tail and sweeps the orphan
    after = read_store(out)
    assert after.ids == expected[0] + ["after"] and len(after.origin.manifest.segments) <= MAX_TAIL
    assert np.array_equal(np.asarray(after.models["m1"].embedding)[:-1], expected[1])
    _listed_only(out)


@pytest.mark.parametrize("fail", [("segment", 1), ("manifest", 1)])
def test_disk_full_during_compaction_keeps_the_store(tmp_path, tiny, monkeypatch, fail):
    ds, out = _with_removed_rows(tmp_path)
    want, probes = _snapshot(out), _probes(ds)
    answers = _answers(out, probes)
    full = Full(monkeypatch, fail)
    with pytest.raises(MedsearchError, match="disk full") as info:
        compact(str(out))
    assert "\n" not in str(info.value)
    assert _snapshot(out) == want and _answers(out, probes) == answers
    _no_temporaries(out)
    full.fail = None
    compact(str(out))
    assert len(read_store(out)) == 30 and _answers(out, probes) == answers
    _listed_only(out)


def test_disk_full_writing_the_index_during_compaction_keeps_answers(tmp_path, tiny, monkeypatch):
    import medsearch.storage.faiss_index as faiss_module
    from medsearch.storage import atomic

    ds, out = _with_removed_rows(tmp_path)
    probes = _probes(ds)
    answers = _answers(out, probes)

    disk_full = [True]

    def write(target, produce):
        if disk_full[0]:
            raise atomic.io_error(OSError(errno.ENOSPC, "No space left on device"), target)
        atomic.atomic_write_with(target, produce)

    monkeypatch.setattr(faiss_module, "atomic_write_with", write)
    with pytest.raises(MedsearchError, match="disk full"):
        compact(str(out))
    assert _answers(out, probes) == answers  # the store still answers, as before
    disk_full[0] = False
    compact(str(out))
    assert _answers(out, probes) == answers


# ---- orphans and read-only folders ------------------------------------------------------------------------

def _with_orphans(tmp_path):
    """A store, and what a killed commit leaves beside it: a renamed segment no manifest lists (not even HDF5:
    reading it would fail) and a half-written temporary segment."""
    ds = _add_images(tmp_path / "ds", 0, 8)
    out = tmp_path / "idx"
    index_tiny(ds, out)
    want, answers = _snapshot(out), _answers(out, _probes(ds))
    (out / "segments" / "seg-000000990.h5").write_bytes(b"not HDF5: reading this would fail")
    (out / "segments" / ".seg-000000991.h5.tmp-999999").write_bytes(b"half")
    return ds, out, want, answers


def test_orphan_segments_are_never_read(tmp_path, tiny):
    ds, out, want, answers = _with_orphans(tmp_path)
    assert _snapshot(out) == want and _answers(out, _probes(ds)) == answers
    for args in (("info", "--verify", out),
                 ("eval", "--index", out, "--heads", "lr", "--no-retrieval", "--n-boot", "10", "--folds", "2")):
        res = run_cli(*args)
        assert res.exit_code == 0, res.output


def test_orphan_segments_are_swept_by_a_compaction(tmp_path, tiny):
    ds, out, want, answers = _with_orphans(tmp_path)
    compact(str(out))
    _listed_only(out)
    assert _answers(out, _probes(ds)) == answers


def test_orphan_segments_are_removed_by_the_next_commit(tmp_path, tiny):
    ds, out, want, answers = _with_orphans(tmp_path)
    _add_images(ds, 8, 9)
    index_tiny(ds, out)  # the next writer: one incremental commit, no tail merge
    assert len(read_store(out)) == 18
    _listed_only(out)


@contextlib.contextmanager
def _store_on_tmpfs(tmp_path):
    """A store with removed rows copied onto an 8 MiB tmpfs of its own (skips where none can be mounted):
    yields (its folder, the tmpfs, its files, the probes' answers, a function answering the probes now)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(disk)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        ds, base = _with_removed_rows(tmp_path)
        out = disk / "idx"
        shutil.copytree(base, out)
        probes = _probes(ds)
        yield out, disk, store_files(out), _answers(out, probes), lambda: _answers(out, probes)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_read_only_folder_compact_refused_and_reads_work(tmp_path, tiny):
    with _store_on_tmpfs(tmp_path) as (out, disk, before, answers, answer_now):
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        res = run_cli("compact", out)
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert "cannot write" in res.output or "read-only" in res.output.lower(), res.output
        assert store_files(out) == before and answer_now() == answers
        assert run_cli("info", out).exit_code == 0


def test_a_really_full_disk_during_compaction_keeps_the_store(tmp_path, tiny):
    with _store_on_tmpfs(tmp_path) as (out, disk, before, answers, answer_now):
        st = os.statvfs(disk)
        with open(disk / "filler", "wb") as f:  # leave about 4 KiB: less than one segment
            try:
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 4096))
            except OSError:
                pass
        res = run_cli("compact", out)
        error = [line for line in res.output.splitlines() if line.startswith("medsearch: error:")]
        assert res.exit_code == 2 and len(error) == 1 and "disk full" in error[0], res.output  # progress lines aside
        assert store_files(out) == before and answer_now() == answers
        _no_temporaries(out)
