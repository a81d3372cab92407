"""Which installed package decodes which transfer syntax, and why a file's syntax cannot be decoded here.

pydicom tries each installed pixel-data plugin for a syntax in turn. The ``dicom`` extra installs only BSD/MIT
decoders (GDCM, pylibjpeg with its openjpeg and RLE plugins, pyjpegls), which between them decode every syntax
below; ``dicom-gpl`` adds pylibjpeg-libjpeg (GPLv3), a second JPEG / JPEG-LS decoder, only when asked for.
"""
from __future__ import annotations

DICOM_EXTRA = "pip install 'medsearch[dicom]'"
GPL_EXTRA = "pip install 'medsearch[dicom-gpl]'"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
NATIVE = "native"  # uncompressed: read by pydicom itself

# transfer syntax UID -> (short name, the packages of the `dicom` extra that decode it)
SYNTAXES = {
    "1.2.840.10008.1.2": ("implicit VR little endian", NATIVE),
    "1.2.840.10008.1.2.1": ("explicit VR little endian", NATIVE),
    "1.2.840.10008.1.2.1.99": ("deflated explicit VR little endian", NATIVE),
    "1.2.840.10008.1.2.2": ("explicit VR big endian", NATIVE),
    "1.2.840.10008.1.2.5": ("RLE lossless", "pydicom, pylibjpeg-rle, python-gdcm"),
    "1.2.840.10008.1.2.4.50": ("JPEG baseline", "python-gdcm, Pillow"),
    "1.2.840.10008.1.2.4.51": ("JPEG extended", "python-gdcm, Pillow (8-bit); pylibjpeg-libjpeg (12-bit, GPL)"),
    "1.2.840.10008.1.2.4.57": ("JPEG lossless", "python-gdcm"),
    "1.2.840.10008.1.2.4.70": ("JPEG lossless SV1", "python-gdcm"),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS lossless", "pyjpegls, python-gdcm"),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS near-lossless", "pyjpegls, python-gdcm"),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 lossless", "pylibjpeg-openjpeg, python-gdcm"),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", "pylibjpeg-openjpeg, python-gdcm"),
    "1.2.840.10008.1.2.4.201": ("HTJ2K lossless", "pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.202": ("HTJ2K lossless RPCL", "pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.203": ("HTJ2K", "pylibjpeg-openjpeg"),
}


def syntax_name(uid: str) -> str:
    """A short readable name of a transfer syntax UID (the UID itself when unknown)."""
    if uid in SYNTAXES:
        return SYNTAXES[uid][0]
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name if name and name != uid else f"transfer syntax {uid}"
    except (ValueError, TypeError):
        return f"transfer syntax {uid}"


def undecodable_reason(uid: str, bits_stored: int = 8) -> str | None:
    """Why pixel data in syntax ``uid`` cannot be decoded with what is installed, or None when it can. 12-bit
    JPEG extended is decoded only by pylibjpeg-libjpeg (GDCM's and Pillow's plugins refuse it)."""
    import importlib.util

    from pydicom.pixels import get_decoder

    if uid == JPEG_EXTENDED and bits_stored > 8 and importlib.util.find_spec("libjpeg") is None:
        return f"12-bit JPEG extended pixel data is decoded only by pylibjpeg-libjpeg (GPLv3): {GPL_EXTRA}"

    try:
        decoder = get_decoder(uid)
    except (NotImplementedError, ValueError):
        return f"{syntax_name(uid)} pixel data is not decoded by any DICOM library medsearch can use (video or unknown)"
    if decoder.is_available:
        return None
    if uid in SYNTAXES:
        return f"{syntax_name(uid)} pixel data needs a decoder that is not installed: {DICOM_EXTRA}"
    return f"{syntax_name(uid)} pixel data needs a decoder that is not installed"
