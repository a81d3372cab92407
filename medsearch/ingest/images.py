"""Decode any image file medsearch meets into an RGB PIL image, or raise ImageError with the reason.

Handles 8/16-bit and float PNG/TIFF, palette, RGBA/LA, CMYK, animated images (first frame) and
decompression bombs. JPEGs are decoded at reduced size with PIL's draft mode when the encoder
only needs a smaller image: that is most of the decoding speed-up. A DICOM file (recognised by its
content, whatever its name) is read by dicom/pixels.py, windowed as the store's PixelOptions say.
"""
from __future__ import annotations

import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")
# 8k x 8k is larger than any photo or scan we expect; larger files are treated as decompression bombs.
MAX_PIXELS = 8192 * 8192


FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)  # a file that is not there to be read


def file_error_reason(exc: OSError) -> str:
    """The one-line reason for one of FILE_ERRORS, the same for every reader of image files."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return "permission denied" if isinstance(exc, PermissionError) else "is a directory, not an image"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB. High bit-depth images are min-max scaled per image."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def array_to_image(arr: np.ndarray) -> Image.Image:
    """An in-memory image (H, W), (H, W, 1|3|4) of any numeric dtype -> RGB PIL."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"array of shape {arr.shape} is not an image")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)).round().astype(np.uint8)
    return to_rgb(Image.fromarray(arr))


def load_image(path: str | os.PathLike | BinaryIO, *, draft_size: int | None = None, pixels=None,
               frame: int | None = None) -> Image.Image:
    """Open ``path`` (a file path, or a binary file object such as an upload held in memory) and return a
    fully decoded RGB image, with the same guards either way.

    ``draft_size``: the smallest side the caller needs; JPEGs are then decoded at the smallest
    DCT scale that still gives at least that many pixels on each side, and a DICOM frame far larger than that
    is box-averaged down before windowing (dicom.pixels.reduce_for). ``pixels`` (dicom.PixelOptions,
    default its defaults) and ``frame`` (from 0; default the middle one) say how a DICOM file is read.
    """
    if _is_dicom_content(path):
        return _load_dicom(path, pixels, frame, draft_size)
    if frame is not None:
        raise ImageError(f"frame {frame} was asked for, but the file is not DICOM")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"image too large ({img.width}x{img.height} pixels; limit {MAX_PIXELS})")
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                if draft_size and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                img.load()
                return to_rgb(img)
    except ImageError:
        raise
    except FILE_ERRORS as exc:
        raise ImageError(file_error_reason(exc)) from None
    except UnidentifiedImageError:
        raise ImageError("not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image too large (decompression bomb protection)") from None
    except OSError as exc:
        # truncated files, symlink loops, I/O errors
        raise ImageError(f"cannot decode: {exc.strerror or exc}".replace("\n", " ")) from None
    except (ValueError, SyntaxError, EOFError, TypeError) as exc:
        raise ImageError(f"cannot decode: {exc}".replace("\n", " ")) from None


def _is_dicom_content(src) -> bool:
    """The DICOM Part 10 marker at byte 128 (a file object is left where it was)."""
    if hasattr(src, "read"):
        try:
            pos = src.tell()
            head = src.read(132)
            src.seek(pos)
        except (OSError, ValueError):
            return False
        return len(head) == 132 and head[128:] == b"DICM"
    from .dicom.files import is_dicom

    return is_dicom(src)


def _load_dicom(src, pixels, frame: int | None, draft_size: int | None) -> Image.Image:
    from .dicom.decoders import DICOM_EXTRA
    from .dicom.pixel_options import PixelOptions

    try:
        from .dicom.pixels import read_dicom

        return read_dicom(src, options=pixels or PixelOptions(), frame=frame, draft_size=draft_size)
    except ImportError as exc:
        raise ImageError(f"a DICOM file, and reading it needs {exc.name or 'pydicom'}: {DICOM_EXTRA}") from None
