"""Patient, study and series identifiers as keyed hashes, so that groups work and the raw ids never leave the
hospital.

A plain hash would not do: patient ids are short (a hospital number has a few million values), so anyone holding
the store could hash every candidate and read the ids back. HMAC-SHA256 with a secret key cannot be reversed
without the key, and the key is kept **outside** the index folder: the folder is what gets copied and shared.

The key is a text file of at least MIN_KEY_CHARS characters: by default ``<out>.id-key`` beside the index folder
(created on the first run, permissions 0600), or any file given with ``--id-key FILE`` (one key for several
stores gives the same patient the same hash in each). A path, not the secret itself, so that the key stays out of
shell histories and process lists. The store records a check value of the key (an HMAC of a fixed text, which
reveals nothing of the key), so a re-run with another key is refused instead of regrouping every patient.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ...display import printable
from ...errors import MedsearchError
from ...storage.schema import ID_HASH_HEX
from ..log import warn

KEY_SUFFIX = ".id-key"
MIN_KEY_CHARS = 32
HASH_SCHEME = f"HMAC-SHA256 with the store's id key, first {ID_HASH_HEX * 4} bits as hex"
_CHECK_TEXT = b"medsearch id-key check"
MAKE_KEY = "python -c 'import secrets; print(secrets.token_hex(32))' > FILE && chmod 600 FILE"


@dataclass(frozen=True)
class IdKey:
    """The secret and where it lives (``path``; ``given``: named with --id-key, else the default beside the store)."""

    secret: bytes
    path: str
    given: bool

    @property
    def check(self) -> str:
        return key_check(self.secret)

    def hash(self, kind: str, value: str) -> str:
        """The keyed hash of identifier ``value`` of ``kind`` ('patient', 'study', 'series', 'row'): equal values of
        one kind hash equal; the kind is hashed in, so a study and a series with the same UID do not."""
        msg = kind.encode() + b"\0" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:ID_HASH_HEX]

    def record(self, groups: str) -> dict:
        """What the store records of the hashing (``groups``: where the rows' groups came from)."""
        where = "given with --id-key" if self.given else "beside the store, never inside it"
        return {"hash": HASH_SCHEME, "key_check": self.check, "key": f"{self.path} ({where})", "groups": groups}


def key_check(secret: bytes) -> str:
    return hmac.new(secret, _CHECK_TEXT, hashlib.sha256).hexdigest()[:16]


def default_key_path(out_dir: str | os.PathLike) -> Path:
    """``indexes/busi`` -> ``indexes/busi.id-key``: beside the index folder, so copying the folder leaves it behind."""
    out = Path(os.path.abspath(out_dir))
    return out.parent / (out.name + KEY_SUFFIX)


def resolve_key(out_dir: str | os.PathLike, id_key: str | None, stored_check: str | None) -> IdKey:
    """The key to hash with: the file ``id_key`` (--id-key), else the one beside the store, created when the store
    has hashed nothing yet. Refused in one line: a missing or short key file, or a key other than the one the
    store's ids were hashed with (``stored_check``)."""
    if id_key:
        path = Path(id_key)
        if not path.is_file():
            raise MedsearchError(f"--id-key '{printable(id_key)}' is not a key file: give a file holding the key "
                                 f"(make one with: {MAKE_KEY})")
        key = IdKey(_read_key(path, "--id-key"), str(path.resolve()), True)
    else:
        path = default_key_path(out_dir)
        if path.exists():
            key = IdKey(_read_key(path, "the id key"), str(path), False)
        elif stored_check:
            raise MedsearchError(f"the store's identifiers were hashed with a key that is not at '{printable(str(path))}'"
                                 ": give that key with --id-key FILE (a new key would regroup every patient)")
        else:
            key = IdKey(_create_key(path), str(path), False)
    if stored_check and key.check != stored_check:
        raise MedsearchError(f"the key '{printable(key.path)}' is not the one the store's identifiers were hashed with "
                             f"(check {key.check}, the store's {stored_check}): give the store's key with --id-key, "
                             "or index into a new --out folder")
    return key


def _read_key(path: Path, what: str) -> bytes:
    try:
        secret = path.read_bytes().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise MedsearchError(f"cannot read {what} '{printable(str(path))}' ({exc.strerror}): fix its permissions "
                             "or give another with --id-key") from None
    if len(secret) < MIN_KEY_CHARS:
        raise MedsearchError(f"{what} '{printable(str(path))}' holds {len(secret)} characters; a key needs at least "
                             f"{MIN_KEY_CHARS} (make one with: {MAKE_KEY})")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"the id key '{printable(str(path))}' can be read by other users: chmod 600 it")
    return secret


def _create_key(path: Path) -> bytes:
    secret = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `index` of the same store made it a moment ago
        return _read_key(path, "the id key")
    except OSError as exc:
        raise MedsearchError(f"cannot create the id key '{printable(str(path))}' ({exc.strerror}): give a key file "
                             "with --id-key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    return secret
