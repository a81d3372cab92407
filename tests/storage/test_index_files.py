"""An index file is checked against the store's record cheaply (size and fingerprint) on every open; the full
sha256 only on request."""
import numpy as np
import pytest

import medsearch.storage.faiss_index as F
from medsearch.errors import MedsearchError
from medsearch.storage.faiss_index import build_index, index_fingerprint, load_index, save_index


def _saved(tmp_path, n=20_000, seed=0, name="m.faiss"):
    x = np.random.default_rng(seed).normal(size=(n, 64)).astype(np.float32)
    path = tmp_path / name
    sha = save_index(build_index(x, np.arange(n)), path)
    return path, sha


def _record(path, sha):
    return dict(size=path.stat().st_size, fingerprint=index_fingerprint(path), sha256=sha)


def test_opening_checks_size_and_fingerprint_without_hashing_the_file(tmp_path, monkeypatch):
    path, sha = _saved(tmp_path)                    # about 5 MB: the fingerprint reads part of it
    record = _record(path, sha)
    hashed = []
    monkeypatch.setattr(F, "sha256_file", lambda p: hashed.append(p) or sha)
    assert load_index(path, dim=64, ntotal=20_000, **record).ntotal == 20_000 and hashed == []
    assert load_index(path, dim=64, ntotal=20_000, verify=True, **record).ntotal == 20_000 and len(hashed) == 1
    assert load_index(path, dim=64, ntotal=20_000, sha256=sha).ntotal == 20_000   # an older record: hashed
    assert len(hashed) == 2


def test_a_swapped_or_truncated_file_is_refused(tmp_path):
    path, sha = _saved(tmp_path)
    record = _record(path, sha)
    other, _ = _saved(tmp_path, seed=1, name="other.faiss")       # same size, dim and rows; other vectors
    assert other.stat().st_size == record["size"]
    other.replace(path)
    with pytest.raises(MedsearchError, match="does not match the store.*medsearch index"):
        load_index(path, dim=64, ntotal=20_000, **record)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(MedsearchError, match="does not match the store"):
        load_index(path, dim=64, ntotal=20_000, size=record["size"], fingerprint=None)


def test_verify_hashes_the_whole_file(tmp_path):
    path, sha = _saved(tmp_path)
    record = _record(path, sha)
    record["sha256"] = "0" * 64                       # a file whose full hash differs from the record
    assert load_index(path, dim=64, ntotal=20_000, **record).ntotal == 20_000
    with pytest.raises(MedsearchError, match="does not match the store"):
        load_index(path, dim=64, ntotal=20_000, verify=True, **record)


def test_fingerprint_reads_a_bounded_part_of_a_large_file(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(0).bytes(12 << 20))
    before = index_fingerprint(big)
    data = bytearray(big.read_bytes())
    data[-1] ^= 1                                     # the last MiB is read
    big.write_bytes(bytes(data))
    assert index_fingerprint(big) != before and index_fingerprint(big).startswith("fp1:")
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert index_fingerprint(small) != index_fingerprint(big)
