"""Crash-safe file replacement: a write that fails midway leaves the old file intact and no temporary behind;
a finished one is fsync'd before the rename and the folder after it; sha256_file equals hashlib's digest."""
import errno
import hashlib
import json
import os

import pytest

from medsearch.errors import MedsearchError
from medsearch.storage import atomic
from medsearch.storage.atomic import (atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_with,
                                      io_error, sha256_file)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def test_each_writer_replaces_the_target_whole(tmp_path):
    target = tmp_path / "f"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    atomic_write_text(target, "twö")
    assert target.read_text(encoding="utf-8") == "twö"
    atomic_write_json(target, {"a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2]} and target.read_text().endswith("\n")
    atomic_write_with(target, lambda tmp: open(tmp, "wb").close())
    assert target.read_bytes() == b"" and _leftovers(tmp_path) == []


def test_an_os_error_midway_keeps_the_old_file_and_says_disk_full(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def half_then_full(tmp):
        with open(tmp, "wb") as f:
            f.write(b"new, half written")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MedsearchError, match=f"disk full while writing '{target}'"):
        atomic_write_with(target, half_then_full)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_any_other_failure_midway_keeps_the_old_file_and_is_raised_as_is(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def fails(tmp):
        with open(tmp, "wb") as f:
            f.write(b"new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(target, fails)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = atomic.fsync_path, os.replace
    monkeypatch.setattr(atomic, "fsync_path", lambda p: (events.append(("fsync", str(p))), real_fsync(p)))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b)))
    target = tmp_path / "f"
    atomic_write_bytes(target, b"data")
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".f.tmp-")) and events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "disk full while writing"),
                                           (errno.EACCES, "choose a writable --out folder"),
                                           (errno.EROFS, "choose a writable --out folder"),
                                           (errno.EIO, "cannot write")])
def test_io_errors_become_one_line_that_says_the_old_data_is_intact(code, message):
    error = io_error(OSError(code, os.strerror(code)), "/x/store.h5")
    assert message in str(error) and "'/x/store.h5'" in str(error)
    assert str(error).endswith("(what was stored before is intact)") and "\n" not in str(error)


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 3])
def test_sha256_file_equals_hashlib(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
