"""A reader while `index` commits sees whole snapshots; a second writer on the same store is refused."""
import os
import subprocess
import time

import numpy as np

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
