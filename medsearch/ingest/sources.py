"""Where a row's image is read from, by whichever process decodes it: a file under the dataset folder, an
array in an .npz, or a URI a CSV manifest gives for images that are not on this machine's disk.

A URI is read where it is, by the process that embeds the row (a Ray worker, or this process): ``file://``
(a path on a file system every worker mounts) with plain file reads, ``s3://`` and ``gs://`` through
pyarrow's file systems (what Ray Data's own readers use; credentials from the usual environment). Percent-escapes are decoded, as in
any URI; a space written as such is taken as it is. Such a row
is recorded with its source as given; its content fingerprint is the sha256 of the bytes the worker read,
taken when it is embedded, since the driver may not be able to read it at all.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import numpy as np
from PIL import Image

from ..errors import ImageError
from .images import array_to_image, load_image

URI_SCHEMES = ("file", "s3", "gs", "gcs")
SHA256_INFO = "medsearch_sha256"  # PIL ``info`` key of an image read from a URI: the sha256 of its bytes
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def uri_scheme(source: str) -> str | None:
    """The scheme of ``source`` when it is a URI (``s3://b/k`` -> 's3'), else None."""
    m = _URI.match(source)
    return m.group(1).lower() if m else None


def unreadable_uri(source: str) -> str | None:
    """Why a URI cannot be read by medsearch (an unknown scheme, a file:// URI that is not absolute), or None."""
    scheme = uri_scheme(source)
    if scheme is None:
        return None
    if scheme not in URI_SCHEMES:
        return (f"URI scheme '{scheme}' is not read; use file:// (a shared file system), s3:// or gs://")
    if scheme == "file" and urlsplit(source).netloc not in ("", "localhost"):
        return "a file:// URI needs an absolute path after its three slashes (file:///shared/images/x.png)"
    return None


def read_uri(uri: str) -> bytes:
    """The bytes at ``uri``; raises ImageError with the reason when they cannot be read."""
    scheme = uri_scheme(uri)
    why = unreadable_uri(uri)
    if why:
        raise ImageError(why)
    try:
        if scheme == "file":
            with open(unquote(urlsplit(uri).path), "rb") as f:
                return f.read()
        parts = urlsplit(uri)
        with _object_store(scheme, parts.netloc).open_input_stream(parts.netloc + unquote(parts.path)) as f:
            return f.read()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except (OSError, ValueError) as exc:  # pyarrow raises OSError / ArrowInvalid (a ValueError)
        raise ImageError(f"cannot read {uri}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@functools.lru_cache(maxsize=64)
def _object_store(scheme: str, bucket: str):
    """One pyarrow file system per bucket and process (a client and its connections, made once), configured
    from the environment as pyarrow does (credentials, region, AWS_ENDPOINT_URL)."""
    try:
        from pyarrow import fs
    except ImportError:
        raise ImageError(f"reading {scheme}:// needs pyarrow: pip install 'medsearch[ray]'") from None
    return fs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]


def open_uri(uri: str, *, draft_size: int | None = None, pixels=None) -> Image.Image:
    """The decoded RGB image at ``uri``, with the sha256 of its bytes in ``info[SHA256_INFO]``."""
    raw = read_uri(uri)
    img = load_image(io.BytesIO(raw), draft_size=draft_size, pixels=pixels)
    img.info[SHA256_INFO] = hashlib.sha256(raw).hexdigest()
    return img


def open_source(root: str, source: str, *, draft_size: int | None = None, pixels=None) -> Image.Image:
    """A file layout's row: a URI read where it is, or a path relative to the dataset folder ``root`` (a
    'path#frame' row is that frame of a multi-frame DICOM file). ``pixels``: the store's dicom.PixelOptions."""
    if uri_scheme(source):
        return open_uri(source, draft_size=draft_size, pixels=pixels)
    path, frame = file_and_frame(os.path.join(root, source))
    return load_image(path, draft_size=draft_size, pixels=pixels, frame=frame)


def file_and_frame(path: str) -> tuple[str, int | None]:
    """(file, frame) of a row's path: a file that exists as named is that file, whatever its name; otherwise
    'file#N' is frame N of the file."""
    from .dicom.files import split_frame

    file, frame = split_frame(str(path))
    if frame is None or os.path.lexists(path):
        return str(path), None
    return file, frame


def open_stored_file(root: str, source: str, *, draft_size: int | None = None, pixels=None) -> Image.Image:
    """The image of a stored row of a file layout (``query --gallery``, `serve`): its URI, or its path under
    the dataset root ``root``; a stored path that is absolute or leaves the root is not followed. ``pixels``:
    the store's dicom.PixelOptions (``pixel_options_of(data.attrs)``)."""
    if uri_scheme(source):
        return open_uri(source, draft_size=draft_size, pixels=pixels)
    rel = PurePosixPath(source.replace("\\", "/"))
    if not root or rel.is_absolute() or ".." in rel.parts:
        raise ImageError("its stored source is not a path under the dataset root")
    path, frame = file_and_frame(str(Path(root) / rel))
    return load_image(path, draft_size=draft_size, pixels=pixels, frame=frame)


def read_query_image(path: str, store_attrs: dict, *, draft_size: int | None = None) -> Image.Image:
    """A query image read as the store read its rows: a DICOM file with the store's window (and 'file#N' as
    frame N); any other image as `index` reads it."""
    from .dicom.pixel_options import pixel_options_of

    file, frame = file_and_frame(path)
    return load_image(file, draft_size=draft_size, pixels=pixel_options_of(store_attrs), frame=frame)


@dataclass(frozen=True)
class RowSource:
    """How any process opens a dataset's rows from their stored ``source``: picklable and small (the dataset
    folder, or the .npz file, which a worker loads once), so it can travel to Ray workers."""

    root: str
    npz: bool = False
    pixels: object = None  # dicom.PixelOptions: how DICOM rows are windowed

    def open(self, source: str, *, draft_size: int | None = None) -> Image.Image:
        if self.npz:
            split, j = source.rsplit("/", 1)
            return array_to_image(_npz_arrays(self.root)[split][int(j)])
        return open_source(self.root, source, draft_size=draft_size, pixels=self.pixels)


@functools.lru_cache(maxsize=2)
def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k.removesuffix("_images"): z[k] for k in z.files if k.endswith("_images")}
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read the dataset file {path} on this worker: {exc}") from None
