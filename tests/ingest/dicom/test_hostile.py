"""Corrupt or hostile DICOM files: each is an ImageError with a one-line reason, never a traceback; and pydicom's own
sample files either decode or are refused for a stated reason."""
import os

import pytest
from pydicom import uid as U
from pydicom.data import get_testdata_files

from medsearch.errors import ImageError
from medsearch.ingest.dicom.pixels import read_dicom

from ..conftest import SHARED_DATA
from .writers import busi_grey, dataset, write

needs_data = pytest.mark.skipif(not (SHARED_DATA / "breast-busi").exists(), reason="../shared/data not available")

# pydicom samples with pixel data that no decoder here reads, and why (each checked to fail with that reason)
BROKEN_SAMPLES = {
    "JPEG2000-embedded-sequence-delimiter.dcm": "cannot decode its JPEG 2000 pixel data",  # a damaged codestream
    "JPEG-lossy.dcm": "JPEG extended",  # 12-bit: GDCM refuses, and libjpeg finds a misplaced marker
    "MR_truncated.dcm": "pixel data truncated",
    "badVR.dcm": "NumberOfFrames '1A' is not a number",
    "nested_priv_SQ.dcm": "declares 0x0 pixels",
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID",
}


def hostile_files(folder) -> dict[str, str]:
    """name -> the reason its refusal must give; written from a real image."""
    arr = busi_grey()
    good = write(folder / "good.dcm", dataset(arr), U.ExplicitVRLittleEndian, arr)
    raw = good.read_bytes()
    out = {}
    (folder / "truncated.dcm").write_bytes(raw[:-1000])
    out["truncated.dcm"] = "truncated|damaged"
    ds = dataset(arr)
    ds.Rows = 128  # declares twice the pixels it holds
    write(folder / "wrong_length.dcm", ds)
    out["wrong_length.dcm"] = "pixel data truncated"
    ds = dataset(arr)
    ds.Rows = ds.Columns = 60000
    write(folder / "huge.dcm", ds)
    out["huge.dcm"] = "image too large"
    ds = dataset(arr)
    del ds.file_meta.TransferSyntaxUID
    ds.preamble = bytes(128)
    ds.save_as(folder / "no_syntax.dcm", enforce_file_format=False, implicit_vr=False, little_endian=True)
    out["no_syntax.dcm"] = "no Transfer Syntax UID"
    ds = dataset(arr)
    jp2 = write(folder / "j2k.dcm", ds, U.JPEG2000Lossless, arr).read_bytes()
    at = jp2.index(b"\xff\x4f\xff\x51") + 4  # the codestream's size header, zeroed
    (folder / "j2k.dcm").write_bytes(jp2[:at] + bytes(40) + jp2[at + 40:])
    out["j2k.dcm"] = "cannot decode its JPEG 2000 lossless pixel data"
    ds = dataset(arr)
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = U.ComprehensiveSRStorage
    ds.save_as(folder / "report.dcm", enforce_file_format=True)
    out["report.dcm"] = r"no pixel data \(SOP class: Comprehensive SR Storage\): not an image"
    return out


@needs_data
def test_hostile_files_are_refused_in_one_line(tmp_path):
    for name, reason in hostile_files(tmp_path).items():
        with pytest.raises(ImageError, match=reason) as err:
            read_dicom(tmp_path / name)
        assert "\n" not in str(err.value), name


def test_pydicom_samples_decode_or_are_refused_with_a_reason():
    seen = set()
    decoded = 0
    for path in get_testdata_files():
        if os.path.isdir(path):
            continue
        name = os.path.basename(path)
        try:
            img = read_dicom(path)
        except ImageError as exc:
            reason = str(exc)
            assert "\n" not in reason
            if name in BROKEN_SAMPLES:
                assert BROKEN_SAMPLES[name] in reason, (name, reason)
                seen.add(name)
            elif "pip install 'medsearch[dicom-gpl]'" in reason:  # 12-bit JPEG: only the optional GPL decoder
                assert "12-bit JPEG extended" in reason, (name, reason)
            else:  # everything else refused carries no image at all
                assert "no pixel data" in reason or "not a readable DICOM file" in reason, (name, reason)
            continue
        assert img.mode == "RGB" and min(img.size) >= 1
        assert name not in BROKEN_SAMPLES, name
        decoded += 1
    assert seen == set(BROKEN_SAMPLES)
    assert decoded >= 80
