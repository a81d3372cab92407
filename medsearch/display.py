"""Text a user reads on one line: file names and ids may hold newlines or control characters.

Every name medsearch prints in one-line-per-item output goes through ``printable``, so a newline in a
file name cannot split a line (or forge one) in `index` or `query` output. JSON output is left exact.
"""
from __future__ import annotations

import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: str) -> str:
    """``text`` with backslash, newline, tab and every other control or unpaired-surrogate character escaped
    (``\\n``, ``\\x1b``, ``\\udce9``), so it stays on one line and is shown unambiguously."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() or (ch == " "):
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)
