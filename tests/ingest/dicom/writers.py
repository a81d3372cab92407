"""DICOM files written by the tests from arrays (real images from ../shared/data), in any transfer syntax an
installed library can encode: pydicom (native, deflated, RLE), pyjpegls (JPEG-LS), pylibjpeg-openjpeg (JPEG
2000), Pillow (JPEG baseline, encapsulated here) and GDCM (JPEG lossless, 8-bit JPEG extended)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom import uid as U
from pydicom.dataset import Dataset, FileMetaDataset

from ..conftest import SHARED_DATA

BUSI = SHARED_DATA / "breast-busi"
ISIC = SHARED_DATA / "skin-isic2018" / "images"
NATIVE = (U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian, U.DeflatedExplicitVRLittleEndian)
BY_PYDICOM = (U.RLELossless, U.JPEGLSLossless, U.JPEGLSNearLossless, U.JPEG2000Lossless, U.JPEG2000)
BY_GDCM = (U.JPEGLosslessSV1, U.JPEGLossless, U.JPEGExtended12Bit)
LOSSLESS = (*NATIVE, U.RLELossless, U.JPEGLSLossless, U.JPEG2000Lossless, U.JPEGLosslessSV1, U.JPEGLossless)


def busi_grey(n: int = 0, size: int = 64) -> np.ndarray:
    """A real ultrasound image (grey, uint8), cropped to ``size`` for speed."""
    path = sorted(p for p in (BUSI / "benign").iterdir() if p.suffix == ".png")[n]
    return np.asarray(Image.open(path).convert("L"))[64:64 + size, 64:64 + size].copy()


def isic_rgb(n: int = 0, size: int = 64) -> np.ndarray:
    path = sorted(ISIC.glob("*.jpg"))[n]
    return np.asarray(Image.open(path).convert("RGB"))[80:80 + size, 80:80 + size].copy()


def to_12bit(grey8: np.ndarray) -> np.ndarray:
    """A 12-bit image with the real image's structure (all 4096 levels reachable)."""
    return (grey8.astype(np.uint16) << 4) | (grey8.astype(np.uint16) >> 4)


def dataset(arr: np.ndarray, *, photometric: str | None = None, bits_stored: int | None = None, signed=False,
            frames: int | None = None, **tags) -> Dataset:
    """An uncompressed (explicit VR little endian) Secondary Capture dataset holding ``arr`` ((F,) H, W (, 3))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = U.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = U.generate_uid()
    colour = arr.shape[-1] == 3 and arr.ndim == (4 if frames else 3)
    ds.Modality = "OT"
    ds.Rows, ds.Columns = arr.shape[-3:-1] if colour else arr.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if frames:
        ds.NumberOfFrames = frames
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


def write(path: Path, ds: Dataset, syntax=U.ExplicitVRLittleEndian, arr: np.ndarray | None = None) -> Path:
    """``ds`` saved to ``path`` in ``syntax`` (``arr``: its pixels, needed by the encoders)."""
    path = Path(path)
    if syntax in BY_GDCM:
        ds.save_as(path, enforce_file_format=True)
        return _gdcm_change(path, syntax)
    if syntax in BY_PYDICOM:
        kw = {"j2k_cr": [4]} if syntax == U.JPEG2000 else {"jls_error": 2} if syntax == U.JPEGLSNearLossless else {}
        ds.compress(syntax, arr, generate_instance_uid=False, **kw)
    elif syntax == U.JPEGBaseline8Bit:
        _jpeg_baseline(ds, arr)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == U.ImplicitVRLittleEndian)
    return path


def _jpeg_baseline(ds: Dataset, arr: np.ndarray) -> None:
    frames = arr if int(ds.get("NumberOfFrames") or 1) > 1 else arr[None]
    parts = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=95)
        parts.append(buf.getvalue())
    ds.PixelData = pydicom.encaps.encapsulate(parts)
    ds["PixelData"].VR = "OB"
    if ds.SamplesPerPixel == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = U.JPEGBaseline8Bit


def _gdcm_change(path: Path, syntax) -> Path:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(syntax))))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"GDCM cannot encode {syntax.name}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return path


def dicom_copy(png_or_jpg: Path, out: Path, syntax=U.ExplicitVRLittleEndian, **tags) -> Path:
    """A DICOM copy of a real image file: RGB pixels as they are, 8 bits."""
    arr = np.asarray(Image.open(png_or_jpg).convert("RGB"))
    return write(out, dataset(arr, **tags), syntax, arr)
