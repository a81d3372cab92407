"""Grey DICOM pixels to 8 bits: modality rescale, then the window the store chose (pixel_options.py).

The window is the DICOM linear function (PS3.3 C.11.2.1.2): values below centre - width/2 are black, above
centre + width/2 white. A file's VOI LUT maps through its table. 'none', and 'file' on a file without any
window, scale the rescaled values' own minimum and maximum to 0-255 (what a viewer shows first).
"""
from __future__ import annotations

import numpy as np

from ...errors import ImageError
from .pixel_options import PixelOptions


def window_grey(arr: np.ndarray, ds, options: PixelOptions) -> np.ndarray:
    """A decoded grey frame as uint8 (before any MONOCHROME1 inversion)."""
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    fixed = options.fixed_window()
    if fixed is not None:
        return linear_window(values, *fixed)
    index = options.file_window_index()
    if index is None:
        return min_max(values)
    windows = file_windows(ds)
    luts = ds.get("VOILUTSequence") or []
    if index < len(windows):
        centre, width, function = windows[index]
        return sigmoid_window(values, centre, width) if function == "SIGMOID" else linear_window(values, centre, width)
    if not windows and index < len(luts):
        return _lut_window(arr, ds, index)
    if index == 0:
        return _plain(arr, ds) if _is_plain_8bit(ds) else min_max(values)
    have = len(windows) or len(luts)
    raise ImageError(f"--window {options.window} asks for window {index + 1}, but the file has {have}: use a smaller "
                     "one, a preset, C,W or none")


def _is_plain_8bit(ds) -> bool:
    """Unsigned data of at most 8 bits with no rescale: shown as stored (a secondary capture, a photo)."""
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return (int(ds.get("BitsStored") or 16) <= 8 and not int(ds.get("PixelRepresentation") or 0)
            and slope == 1 and intercept == 0 and "ModalityLUTSequence" not in ds)


def _plain(arr: np.ndarray, ds) -> np.ndarray:
    return np.asarray(arr, np.uint8) if arr.dtype == np.uint8 else np.clip(arr, 0, 255).astype(np.uint8)


def file_windows(ds) -> list[tuple[float, float, str]]:
    """The file's (centre, width, function) windows, in order; widths below 1 are left out."""
    centres, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centres is None or widths is None:
        return []
    centres = list(centres) if _multi(centres) else [centres]
    widths = list(widths) if _multi(widths) else [widths]
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    out = []
    for c, w in zip(centres, widths):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if w >= 1 and np.isfinite(c) and np.isfinite(w):
            out.append((c, w, function))
    return out


def _multi(v) -> bool:
    return not isinstance(v, (str, bytes)) and hasattr(v, "__len__")


def linear_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM LINEAR window to 0-255."""
    y = (values - (centre - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return _to_u8(y)


def sigmoid_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    y = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - centre) / width, -500, 500)))
    return _to_u8(y)


def min_max(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return _to_u8((values - lo) / (hi - lo)) if hi > lo else np.zeros(values.shape, np.uint8)


def _lut_window(arr: np.ndarray, ds, index: int) -> np.ndarray:
    """The file's ``index``-th VOI LUT applied to the modality values, scaled by the LUT's output bits."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    item = ds.VOILUTSequence[index]
    bits = int(item.LUTDescriptor[2]) if "LUTDescriptor" in item else 16
    out = apply_voi(apply_modality_lut(arr, ds), ds, index=index)
    return _to_u8(np.asarray(out, np.float64) / float(2 ** max(1, min(bits, 16)) - 1))


def _to_u8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
