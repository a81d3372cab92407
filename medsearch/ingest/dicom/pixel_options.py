"""How a store turns DICOM pixels into the encoder's image: the window (``--window``) and which frames become rows
(``--frames``). Recorded in the store so that `query`, `serve` and the gallery read a DICOM file the way `index`
did. Plain data, importable without pydicom (the CLI builds it at start-up)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from ...errors import MedsearchError

PIXELS_ATTR = "dicom_pixels"  # store attribute: the JSON of the PixelOptions a store was built with
FRAMES = ("middle", "all")
# Fixed windows (centre, width) in modality units after rescale, i.e. Hounsfield units for CT.
PRESETS = {"lung": (-600.0, 1500.0), "soft-tissue": (40.0, 400.0), "bone": (400.0, 1800.0), "brain": (40.0, 80.0)}
WINDOW_HELP = ("file (the file's first window, else its VOI LUT), N (its N-th window, from 1), "
               f"{', '.join(PRESETS)}, C,W (a fixed centre and width) or none (min-max)")
_FIXED = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class PixelOptions:
    """``window``: see WINDOW_HELP; ``frames``: 'middle' (one row per file, its middle frame) or 'all' (one row
    per frame, keyed 'file#frame')."""

    window: str = "file"
    frames: str = "middle"

    def check(self) -> "PixelOptions":
        """Self, or a one-line error naming the flag."""
        self.fixed_window()
        if self.frames not in FRAMES:
            raise MedsearchError(f"--frames '{self.frames}' is not one of {', '.join(FRAMES)}")
        return self

    def fixed_window(self) -> tuple[float, float] | None:
        """(centre, width) of a preset or 'C,W' window; None for file, N and none."""
        w = str(self.window).strip().lower()
        if w in PRESETS:
            return PRESETS[w]
        if w in ("file", "none") or (w.isdigit() and int(w) >= 1):
            return None
        m = _FIXED.match(w)
        if m and float(m.group(2)) >= 1:
            return float(m.group(1)), float(m.group(2))
        raise MedsearchError(f"--window '{self.window}' is not understood: use {WINDOW_HELP}")

    def file_window_index(self) -> int | None:
        """0-based index of the file's window to use ('file' -> 0, 'N' -> N-1); None for fixed/none."""
        w = str(self.window).strip().lower()
        if w == "file":
            return 0
        return int(w) - 1 if w.isdigit() else None

    def to_attr(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def pixel_options_of(attrs: dict) -> PixelOptions:
    """The pixel options a store records (the defaults for a store that records none)."""
    raw = attrs.get(PIXELS_ATTR)
    if not raw:
        return PixelOptions()
    try:
        got = json.loads(raw)
        return PixelOptions(window=str(got["window"]), frames=str(got["frames"])).check()
    except (ValueError, KeyError, TypeError, MedsearchError):
        raise MedsearchError(f"the store's {PIXELS_ATTR} record is damaged ({str(raw)[:60]}): re-index the dataset "
                             "into a new --out folder") from None
