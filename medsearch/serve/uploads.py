"""Uploaded query images: read within a size limit, checked to be an image type, decoded in memory.

An upload is never written to disk: the request body is read into memory up to the limit (a larger one is
refused, 413, before it is all read) and multipart bodies are parsed here rather than by Starlette, whose form
parser spools files over 1 MB to a temporary file. Decoding uses `index`'s own guards (ingest.images.load_image:
decompression bombs, truncated files), reading from the bytes. Pages keep recent uploads in an in-memory
cache, by content hash, so that a search on an upload can be refined and linked while the server runs.
"""
from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from ..errors import ImageError
from ..ingest.dicom.pixel_options import pixel_options_of
from ..ingest.images import load_image
from .errors import HttpError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/tiff", "image/gif", "image/webp", "application/dicom")
GENERIC_TYPES = ("", "application/octet-stream")  # what clients send when they do not know the type
MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"BM", "bmp"), (b"II*\x00", "tiff"),
         (b"MM\x00*", "tiff"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))
ACCEPTED = "PNG, JPEG, BMP, TIFF, GIF, WebP or DICOM"


@dataclass(frozen=True)
class Upload:
    """An uploaded image's bytes, their sha256 (hex) and the file name the client gave (display only)."""

    data: bytes
    sha256: str
    filename: str = ""


def image_kind(data: bytes) -> str | None:
    """The image format the bytes start with, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[128:132] == b"DICM":  # DICOM Part 10: a 128-byte preamble, then the marker
        return "dicom"
    return next((kind for magic, kind in MAGIC if data.startswith(magic)), None)


def check_image_bytes(data: bytes, content_type: str, filename: str = "") -> Upload:
    """Refuse an empty body (400), a declared non-image type or bytes of no known image format (415)."""
    declared = content_type.split(";")[0].strip().lower()
    if not data:
        raise HttpError(400, "the upload is empty: send the image file's bytes")
    if declared not in IMAGE_TYPES and declared not in GENERIC_TYPES:
        raise HttpError(415, f"upload of type '{declared}' is not an image: send a {ACCEPTED} file")
    if image_kind(data) is None:
        raise HttpError(415, f"the upload is not a {ACCEPTED} image (its first bytes match none of them)")
    return Upload(data, hashlib.sha256(data).hexdigest(), filename[:200])


def decode(upload: Upload, store_attrs: dict, *, draft_size: int | None = None) -> Image.Image:
    """The upload as an RGB image, read as the store read its rows (a DICOM file with the store's window);
    an undecodable or oversized image is a 400 with the reason."""
    try:
        return load_image(io.BytesIO(upload.data), draft_size=draft_size, pixels=pixel_options_of(store_attrs))
    except ImageError as exc:
        raise HttpError(400, f"cannot read the uploaded image: {exc}") from None


async def read_body(request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise HttpError(413, _too_large(limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + 64 * 1024:  # room for the multipart envelope around a file at the limit
            raise HttpError(413, _too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"the upload is larger than the server's limit of {limit / 1e6:g} MB: send a smaller image"


async def read_upload(request, limit: int) -> tuple[Upload, dict[str, str]]:
    """The image of a request (a raw image body, or a multipart form's ``image`` file) and the form's other
    fields (empty for a raw body)."""
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        fields, files = parse_multipart(body, content_type)
        if "image" not in files:
            raise HttpError(400, "the form has no 'image' file: send the image as the form field 'image'")
        data, part_type, filename = files["image"]
        upload = check_image_bytes(data, part_type, filename)
    else:
        upload, fields = check_image_bytes(body, content_type), {}
    if len(upload.data) > limit:
        raise HttpError(413, _too_large(limit))
    return upload, fields


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, tuple[bytes, str, str]]]:
    """Text fields and files (bytes, content type, file name) of a multipart/form-data body, in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise HttpError(400, "multipart body without a boundary: send a well-formed multipart/form-data request")
    parts: list[dict] = []
    header = {"field": b"", "value": b""}

    def on_part_begin():
        parts.append({"headers": {}, "data": []})

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        parts[-1]["headers"][header["field"].decode("latin-1").lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_part_data(data, start, end):
        parts[-1]["data"].append(data[start:end])

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field, on_header_value=on_header_value,
                     on_header_end=on_header_end, on_part_data=on_part_data)
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors for a malformed body
        raise HttpError(400, f"malformed multipart body ({type(exc).__name__}): send a well-formed form") from None
    return _fields_and_files(parts, parse_options_header)


def _fields_and_files(parts, parse_options_header):
    fields, files = {}, {}
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get("content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        data = b"".join(part["data"])
        if b"filename" in disposition:
            files[name] = (data, part["headers"].get("content-type", b"").decode("latin-1"),
                           disposition[b"filename"].decode("utf-8", "replace"))
        elif len(data) <= 4096:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


class UploadCache:
    """Recent uploads by sha256, in memory only, up to ``max_bytes`` in all (least recently used go first)."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, upload: Upload) -> None:
        with self._lock:
            self._items[upload.sha256] = upload
            self._items.move_to_end(upload.sha256)
            while sum(len(u.data) for u in self._items.values()) > self.max_bytes and len(self._items) > 1:
                self._items.popitem(last=False)

    def get(self, sha256: str) -> Upload | None:
        with self._lock:
            upload = self._items.get(sha256)
            if upload is not None:
                self._items.move_to_end(sha256)
            return upload
