"""A JPEG 2000 frame decoded at a reduced resolution level, for a caller that needs far fewer pixels.

JPEG 2000 stores an image as wavelet resolution levels, so OpenJPEG can stop decoding at 1/2, 1/4, 1/8 of the size
at a fraction of the cost of the whole frame: a radiograph is 2,000-3,000 pixels a side, and `index` needs about
256 (benchmarks/RESULTS.md has the measurement). pydicom's JPEG 2000 plugins do not expose that level, but Pillow's JPEG 2000 reader
does (``Image.reduce``), so a grey, unsigned frame is decoded through Pillow. Anything else returns None and is
decoded whole by pydicom, as before: colour (its component transform), signed samples, a JP2 file wrapper, or a
stream Pillow cannot read.
"""
from __future__ import annotations

import io

import numpy as np
from pydicom.uid import JPEG2000, JPEG2000Lossless

J2K_SYNTAXES = (JPEG2000Lossless, JPEG2000)
SIZ_START = b"\xff\x4f\xff\x51"  # a raw codestream: SOC, then the SIZ marker
SSIZ_OFFSET = 42  # SOC, SIZ, Lsiz, Rsiz, 8 x 4 bytes of sizes and offsets, Csiz: then the first Ssiz


def reduced_frame(ds, uid: str, index: int, frames: int, factor: int) -> np.ndarray | None:
    """Frame ``index`` of ``ds`` decoded at the largest resolution level 2**k <= ``factor``, as the stored integer
    samples (uint8 or uint16, the precision of the stream), or None where this path does not apply."""
    from PIL import Image
    from pydicom.encaps import get_frame

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if uid not in J2K_SYNTAXES or int(ds.get("SamplesPerPixel") or 1) != 1 or photometric not in (
            "MONOCHROME1", "MONOCHROME2") or int(ds.get("PixelRepresentation") or 0) != 0 or factor < 2:
        return None
    try:
        stream = get_frame(ds.PixelData, index, number_of_frames=frames)
    except Exception:  # malformed encapsulation: pydicom's own decoding gives the reason
        return None
    precision = _precision(stream)
    if precision is None:
        return None
    level = int(np.log2(factor))
    try:
        with Image.open(io.BytesIO(stream)) as img:
            img.reduce = level  # OpenJPEG's resolution reduction, applied at decode
            img.load()
            arr = np.asarray(img)
    except Exception:  # fewer resolution levels than asked, or a stream Pillow refuses
        return None
    if arr.ndim != 2:
        return None
    if arr.dtype == np.uint16 and precision < 16:
        arr = arr >> (16 - precision)  # Pillow scales a p-bit stream up to 16 bits; the window needs stored values
    return arr


def _precision(stream: bytes) -> int | None:
    """The bit depth of a one-component, unsigned raw codestream (its SIZ marker), else None."""
    if not stream.startswith(SIZ_START) or len(stream) <= SSIZ_OFFSET:
        return None
    components = int.from_bytes(stream[SSIZ_OFFSET - 2:SSIZ_OFFSET], "big")
    ssiz = stream[SSIZ_OFFSET]
    if components != 1 or ssiz & 0x80:  # several components, or signed samples
        return None
    precision = (ssiz & 0x7F) + 1
    return precision if precision <= 16 else None
