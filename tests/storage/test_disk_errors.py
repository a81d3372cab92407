"""A full disk or a read-only output folder: one clear error, and the store already there stays intact.
Uses a real small tmpfs when this process may mount one (root, as in CI); otherwise the OS error is simulated."""
import errno
import os
import subprocess

import pytest

import medsearch.storage.segments as segments_module
from medsearch.storage import atomic
from medsearch.errors import MedsearchError
from medsearch.storage.store import read_store

from ..conftest import index_tiny as _index, store_files


def _tmpfs(path, size="1M"):
    path.mkdir()
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                              capture_output=True).returncode == 0
    return ok


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    if not _tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder, leave=4096):
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
        except OSError:
            pass


def test_disk_full_keeps_store(small_disk, folder_dataset, tiny):
    out = small_disk / "idx"
    _index(folder_dataset, out)
    before = store_files(out)
    for i in range(30):  # new rows, so the next run must commit a bigger store
        os.link(folder_dataset / "benign" / "benign_00.png", folder_dataset / "benign" / f"copy{i}.png")
    _fill(small_disk)
    with pytest.raises(MedsearchError, match="disk full"):
        _index(folder_dataset, out)
    assert store_files(out) == before
    assert len(read_store(out)) == 24
    assert not [p for p in os.listdir(out) if ".tmp-" in p]  # no half-written temporary left behind


def test_read_only_folder_keeps_store(small_disk, folder_dataset, tiny):
    out = small_disk / "idx"
    _index(folder_dataset, out)
    before = store_files(out)
    os.link(folder_dataset / "benign" / "benign_00.png", folder_dataset / "benign" / "new.png")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(MedsearchError, match="cannot write|read-only|Read-only"):
        _index(folder_dataset, out)
    assert store_files(out) == before


def test_simulated_enospc_during_commit(tmp_path, folder_dataset, tiny, monkeypatch):
    out = tmp_path / "idx"
    _index(folder_dataset, out)
    before = store_files(out)
    os.link(folder_dataset / "benign" / "benign_00.png", folder_dataset / "benign" / "new.png")
    def half_then_full(target, data):
        def write_half(tmp):
            with open(tmp, "wb") as f:
                f.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        atomic.atomic_write_with(target, write_half)
    monkeypatch.setattr(segments_module, "atomic_write_bytes", half_then_full)
    with pytest.raises(MedsearchError, match="disk full"):
        _index(folder_dataset, out)
    assert store_files(out) == before
