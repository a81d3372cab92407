"""A DICOM file's pixels as a radiologist sees them, as the 8-bit RGB image an encoder takes.

Grey images: the modality rescale (slope/intercept, or a modality LUT) gives physical values (Hounsfield units
for CT); the window (the file's VOI LUT or window centre/width, a preset, a fixed one, or min-max) maps them
to 0-255; MONOCHROME1 (white is low) is inverted. Colour images come back from pydicom as RGB (YBR converted,
palettes applied) and are scaled to 8 bits from their bits stored. One frame is decoded: the middle one, or
the one a row names. Every failure is an ImageError with a one-line reason, never pydicom's traceback.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image

from ...errors import ImageError
from ..images import FILE_ERRORS, MAX_PIXELS, file_error_reason
from .decoders import NATIVE, SYNTAXES, syntax_name, undecodable_reason
from .pixel_options import PixelOptions

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
REDUCE_FROM = 4  # a frame is box-averaged down only when it is at least this many times the size needed


def read_dicom(src: str | os.PathLike | bytes | BinaryIO, *, options: PixelOptions = PixelOptions(),
               frame: int | None = None, draft_size: int | None = None) -> Image.Image:
    """The RGB image of one frame of a DICOM file (``frame`` from 0; default the middle frame). ``draft_size``:
    the smallest side the caller needs (reduce_for)."""
    ds = read_dataset(src)
    arr = _reduced_j2k(ds, frame, draft_size) if draft_size else None
    if arr is None:
        arr, ds = decode_frame(ds, frame)
    if draft_size and str(ds.get("PhotometricInterpretation", "")).strip().upper() != "PALETTE COLOR":
        arr = reduce_for(arr, draft_size)
    return to_image(arr, ds, options)


def _reduced_j2k(ds, frame: int | None, draft_size: int) -> np.ndarray | None:
    """A grey JPEG 2000 frame far larger than needed, decoded at a reduced resolution level (j2k_reduced);
    None where that does not apply (the frame is then decoded whole)."""
    from .j2k_reduced import J2K_SYNTAXES, reduced_frame

    meta = getattr(ds, "file_meta", None)
    if meta is None or str(meta.get("TransferSyntaxUID", "")).strip() not in J2K_SYNTAXES:
        return None  # every other syntax: decode_frame checks and decodes it, once
    uid, frames = check_decodable(ds)
    factor = min(int(ds.Rows), int(ds.Columns)) // int(draft_size)
    if factor < REDUCE_FROM:
        return None
    return reduced_frame(ds, uid, _frame_index(frames, frame), frames, factor)


def _frame_index(frames: int, frame: int | None) -> int:
    """Frame ``frame`` (default: the middle one), refused when the file has no such frame."""
    index = frames // 2 if frame is None else frame
    if not 0 <= index < frames:
        raise ImageError(f"frame {index} does not exist: the file has {frames} frame(s)")
    return index


def reduce_for(arr: np.ndarray, size: int) -> np.ndarray:
    """A frame at least REDUCE_FROM times ``size`` on its short side, averaged over f x f pixel blocks (f: the
    largest whole factor that keeps the short side at least ``size``; the last rows and columns short of a whole
    block are left out), in its own integer type. Why: a radiograph is 2,000-3,000 pixels a side and the encoder
    needs about 256; windowing and colour conversion at full size cost more than the embedding, as a JPEG's
    full-scale decode would (images.load_image decodes those at reduced DCT scale for the same reason). Smaller
    frames are left as they are."""
    f = min(arr.shape[0], arr.shape[1]) // int(size)
    if f < REDUCE_FROM:
        return arr
    h, w = arr.shape[0] // f * f, arr.shape[1] // f * f
    mean = arr[:h, :w].reshape(h // f, f, w // f, f, *arr.shape[2:]).mean(axis=(1, 3), dtype=np.float32)
    return np.rint(mean).astype(arr.dtype) if arr.dtype.kind in "iu" else mean.astype(arr.dtype)


def read_dataset(src, *, pixels: bool = True):
    """The parsed file (``pixels=False``: the header only, without reading the pixel data)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    try:
        return pydicom.dcmread(src, stop_before_pixels=not pixels)
    except FILE_ERRORS as exc:
        raise ImageError(file_error_reason(exc)) from None
    except InvalidDicomError as exc:
        raise ImageError(f"not a readable DICOM file: {_line(exc)}") from None
    except Exception as exc:  # pydicom raises many types on a damaged header (struct, KeyError, EOF...)
        raise ImageError(f"damaged DICOM header: {_line(exc)}") from None


def number_of_frames(ds) -> int:
    """Frames a parsed file declares (1 when it says nothing)."""
    try:
        n = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise ImageError(f"NumberOfFrames {str(ds.get('NumberOfFrames'))[:20]!r} is not a number") from None
    if n < 1:
        raise ImageError(f"NumberOfFrames is {n}")
    return n


def check_decodable(ds) -> tuple[str, int]:
    """Refuse, before any decoding, a file that is no image, a syntax nothing installed decodes, or a declared
    size too large or larger than its data; returns (transfer syntax UID, frames)."""
    if "PixelData" not in ds:
        other = next((k for k in PIXEL_KEYWORDS[1:] if k in ds), None)
        if other:
            raise ImageError(f"{other} (floating-point pixels, e.g. a parametric map) is not read")
        sop = ds.get("SOPClassUID")
        what = getattr(sop, "name", "") or str(sop or "none given")
        raise ImageError(f"no pixel data (SOP class: {what}): not an image")
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "") if meta is not None else "").strip()
    if not uid:
        raise ImageError("its file meta has no Transfer Syntax UID, so its pixel data cannot be interpreted")
    why = undecodable_reason(uid, int(ds.get("BitsStored") or 0))
    if why:
        raise ImageError(why)
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or cols < 1:
        raise ImageError(f"declares {rows}x{cols} pixels")
    if rows * cols > MAX_PIXELS:
        raise ImageError(f"image too large ({cols}x{rows} pixels; limit {MAX_PIXELS})")
    frames = number_of_frames(ds)
    if SYNTAXES.get(uid, ("", ""))[1] == NATIVE:
        _check_native_length(ds, rows, cols, frames)
    return uid, frames


def _check_native_length(ds, rows: int, cols: int, frames: int) -> None:
    bits = int(ds.get("BitsAllocated") or 0)
    spp = int(ds.get("SamplesPerPixel") or 1)
    if bits not in (1, 8, 16, 32, 64):
        raise ImageError(f"BitsAllocated {bits} is not a DICOM pixel size")
    need = (rows * cols * frames * spp * bits + 7) // 8
    if "YBR_FULL_422" == str(ds.get("PhotometricInterpretation", "")):
        need = need * 2 // 3
    have = len(ds.PixelData)
    if have < need:
        raise ImageError(f"pixel data truncated: {have} bytes where {rows}x{cols}x{frames} frames need {need}")


def decode_frame(ds, frame: int | None):
    """(pixel array of frame ``frame`` (default the middle one), dataset describing it after decoding)."""
    from pydicom import Dataset
    from pydicom.pixels import pixel_array

    uid, frames = check_decodable(ds)
    index = _frame_index(frames, frame)
    out = Dataset()
    try:
        with warnings.catch_warnings():  # pydicom's heuristics about the data ("... matches the expected number
            warnings.simplefilter("ignore", UserWarning)  # for uncompressed data"): a bad frame still raises
            arr = pixel_array(ds, index=index if frames > 1 else None, ds_out=out)
    except MemoryError:
        raise ImageError(f"not enough memory to decode its {ds.Rows}x{ds.Columns} pixels") from None
    except Exception as exc:  # every plugin failed, or the data is inconsistent with its header
        where = f"frame {index} of its {syntax_name(uid)} pixel data" if frames > 1 else f"its {syntax_name(uid)} pixel data"
        raise ImageError(f"cannot decode {where}: {_line(exc)}") from None
    for elem in out:  # what decoding changed (e.g. YBR -> RGB)
        ds[elem.tag] = elem
    return arr, ds


def to_image(arr: np.ndarray, ds, options: PixelOptions) -> Image.Image:
    """The decoded frame as 8-bit RGB, windowed as ``options`` says."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            return Image.fromarray(_scale_bits(apply_color_lut(arr, ds), _palette_bits(ds)), mode="RGB")
        if arr.ndim == 3:
            if arr.shape[2] != 3:
                raise ImageError(f"{arr.shape[2]} samples per pixel")
            return Image.fromarray(_scale_bits(arr, int(ds.get("BitsStored") or 8)), mode="RGB")
        from .windows import window_grey

        grey = window_grey(arr, ds, options)
    except ImageError:
        raise
    except Exception as exc:  # a LUT or window inconsistent with the pixels
        raise ImageError(f"cannot apply its rescale/window: {_line(exc)}") from None
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, mode="L").convert("RGB")


def _palette_bits(ds) -> int:
    desc = ds.get("RedPaletteColorLookupTableDescriptor")
    return int(desc[2]) if desc is not None and len(desc) == 3 and int(desc[2]) in (8, 16) else 16


def _scale_bits(arr: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned samples of ``bits`` bits -> uint8 (8-bit data unchanged)."""
    if arr.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(arr)
    top = float(2 ** max(1, min(bits, 32)) - 1)
    return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).replace(" Use force=True to force reading.", "").split()) or type(exc).__name__
    return text[:300]
