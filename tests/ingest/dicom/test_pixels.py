"""DICOM pixels as a radiologist sees them, on real images written in every transfer syntax an installed library
can encode: lossless syntaxes decode exactly, lossy ones closely; windows, rescale, MONOCHROME1, colour and frames."""
import numpy as np
import pytest
from pydicom import uid as U

from medsearch.errors import ImageError
from medsearch.ingest.dicom.pixel_options import PixelOptions
from medsearch.ingest.dicom.pixels import decode_frame, read_dataset, read_dicom

from ..conftest import SHARED_DATA
from .writers import LOSSLESS, busi_grey, dataset, isic_rgb, to_12bit, write

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "breast-busi").exists(), reason="../shared/data not available")

GREY8_LOSSLESS = LOSSLESS
GREY16_LOSSLESS = LOSSLESS  # every lossless syntax here holds 12 bits stored in 16
RGB_LOSSLESS = (U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian, U.DeflatedExplicitVRLittleEndian,
                U.RLELossless, U.JPEGLSLossless, U.JPEG2000Lossless)


def window_ref(values, centre, width):
    """PS3.3 C.11.2.1.2.1, written out independently of the code under test."""
    out = np.empty(values.shape, np.float64)
    lo, hi = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    out[values <= lo] = 0
    out[values > hi] = 255
    mid = (values > lo) & (values <= hi)
    out[mid] = ((values[mid] - (centre - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(out).astype(np.uint8)


def grey(img):
    arr = np.asarray(img)
    assert img.mode == "RGB" and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0]


@pytest.mark.parametrize("syntax", GREY8_LOSSLESS, ids=lambda s: s.name)
def test_8bit_grey_lossless_is_exact(tmp_path, syntax):
    arr = busi_grey()
    path = write(tmp_path / "a.dcm", dataset(arr), syntax, arr)
    assert read_dataset(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(grey(read_dicom(path)), arr)  # plain 8-bit data is shown as stored


@pytest.mark.parametrize("syntax", GREY16_LOSSLESS, ids=lambda s: s.name)
def test_12bit_grey_lossless_is_exact_and_windowed(tmp_path, syntax):
    arr = to_12bit(busi_grey(1))
    ds = dataset(arr, bits_stored=12, WindowCenter=1800, WindowWidth=2400)
    path = write(tmp_path / "a.dcm", ds, syntax, arr)
    raw, _ = decode_frame(read_dataset(path), None)
    np.testing.assert_array_equal(raw, arr)
    np.testing.assert_array_equal(grey(read_dicom(path)), window_ref(arr.astype(float), 1800, 2400))
    # min-max on request; a fixed window on request
    mm = grey(read_dicom(path, options=PixelOptions(window="none")))
    assert mm.min() == 0 and mm.max() == 255
    np.testing.assert_array_equal(grey(read_dicom(path, options=PixelOptions(window="1000,500"))),
                                  window_ref(arr.astype(float), 1000, 500))


@pytest.mark.parametrize("syntax", (U.ExplicitVRLittleEndian, U.RLELossless, U.JPEG2000Lossless), ids=lambda s: s.name)
def test_ct_rescale_windows_and_presets(tmp_path, syntax):
    """Signed 16-bit CT-like data with a rescale to HU and two file windows: the first by default, the second
    with window '2', a preset in HU."""
    hu = to_12bit(busi_grey(2)).astype(np.int32) - 2048  # -2048..2047 HU-like values from a real image
    raw = ((hu + 1024) // 2).astype(np.int16)  # stored = (HU - intercept) / slope, with slope 2, intercept -1024
    hu = raw.astype(np.float64) * 2 - 1024
    ds = dataset(raw, bits_stored=16, signed=True, Modality="CT", RescaleSlope=2, RescaleIntercept=-1024,
                 WindowCenter=[40, -600], WindowWidth=[400, 1500])
    path = write(tmp_path / "ct.dcm", ds, syntax, raw)
    np.testing.assert_array_equal(grey(read_dicom(path)), window_ref(hu, 40, 400))
    np.testing.assert_array_equal(grey(read_dicom(path, options=PixelOptions(window="2"))), window_ref(hu, -600, 1500))
    np.testing.assert_array_equal(grey(read_dicom(path, options=PixelOptions(window="bone"))), window_ref(hu, 400, 1800))
    with pytest.raises(ImageError, match="asks for window 3, but the file has 2"):
        read_dicom(path, options=PixelOptions(window="3"))


def test_voi_lut_sequence(tmp_path):
    from pydicom.dataset import Dataset

    arr = to_12bit(busi_grey(3))
    lut = np.rint(np.sqrt(np.arange(4096) / 4095.0) * 65535).astype(np.uint16)  # a gamma curve, 16-bit output
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.astype("<u2").tobytes()
    ds = dataset(arr, bits_stored=12)
    ds.VOILUTSequence = [item]
    path = write(tmp_path / "lut.dcm", ds, U.ExplicitVRLittleEndian, arr)
    want = np.rint(lut[arr] / 65535.0 * 255).astype(np.uint8)
    np.testing.assert_array_equal(grey(read_dicom(path)), want)


def test_monochrome1_is_inverted(tmp_path):
    arr = busi_grey(4)
    m2 = write(tmp_path / "m2.dcm", dataset(arr), U.RLELossless, arr)
    m1 = write(tmp_path / "m1.dcm", dataset(arr, photometric="MONOCHROME1"), U.RLELossless, arr)
    np.testing.assert_array_equal(grey(read_dicom(m1)), 255 - grey(read_dicom(m2)))


@pytest.mark.parametrize("syntax", RGB_LOSSLESS, ids=lambda s: s.name)
def test_rgb_lossless_is_exact(tmp_path, syntax):
    arr = isic_rgb()
    path = write(tmp_path / "rgb.dcm", dataset(arr), syntax, arr)
    np.testing.assert_array_equal(np.asarray(read_dicom(path)), arr)


def test_ybr_full_is_converted(tmp_path):
    from pydicom.pixels import convert_color_space

    arr = isic_rgb(1)
    ybr = convert_color_space(arr, "RGB", "YBR_FULL")
    path = write(tmp_path / "ybr.dcm", dataset(ybr, photometric="YBR_FULL"), U.ExplicitVRLittleEndian, ybr)
    assert np.abs(np.asarray(read_dicom(path)).astype(int) - arr).max() <= 2


@pytest.mark.parametrize("syntax,colour,mean_err", [
    (U.JPEGBaseline8Bit, False, 2.0), (U.JPEGBaseline8Bit, True, 3.0), (U.JPEGExtended12Bit, False, 2.0),
    (U.JPEG2000, False, 3.0), (U.JPEGLSNearLossless, False, 2.0)], ids=lambda v: getattr(v, "name", str(v)))
def test_lossy_syntaxes_decode_closely(tmp_path, syntax, colour, mean_err):
    arr = isic_rgb(2) if colour else busi_grey(5)
    path = write(tmp_path / "lossy.dcm", dataset(arr), syntax, arr)
    got = np.asarray(read_dicom(path)) if colour else grey(read_dicom(path))
    err = np.abs(got.astype(int) - arr)
    assert err.mean() <= mean_err
    if syntax == U.JPEGLSNearLossless:
        assert err.max() <= 2  # the near-lossless bound it was encoded with


def test_12bit_jpeg_extended_needs_the_gpl_extra(monkeypatch):
    """No installed library encodes 12-bit JPEG extended (GDCM's wheel writes a stream nothing decodes), so this
    uses pydicom's own sample; without pylibjpeg-libjpeg the reason names the GPL extra."""
    import importlib.util

    from pydicom.data import get_testdata_file

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "libjpeg" else real(name, *a))
    with pytest.raises(ImageError, match=r"medsearch\[dicom-gpl\]"):
        read_dicom(get_testdata_file("JPEG-lossy.dcm"))


@pytest.mark.parametrize("syntax", (U.ExplicitVRLittleEndian, U.RLELossless, U.JPEGBaseline8Bit, U.JPEG2000Lossless),
                         ids=lambda s: s.name)
def test_multiframe_middle_by_default_and_any_frame(tmp_path, syntax):
    frames = np.stack([busi_grey(i) for i in (6, 7, 8)])
    path = write(tmp_path / "mf.dcm", dataset(frames, frames=3), syntax, frames)
    tol = 3 if syntax == U.JPEGBaseline8Bit else 0
    for k, img in ((1, read_dicom(path)), (0, read_dicom(path, frame=0)), (2, read_dicom(path, frame=2))):
        assert np.abs(grey(img).astype(int) - frames[k]).mean() <= tol
    with pytest.raises(ImageError, match="frame 3 does not exist: the file has 3"):
        read_dicom(path, frame=3)


def test_bytes_and_file_objects_read_the_same(tmp_path):
    import io

    arr = busi_grey(9)
    path = write(tmp_path / "b.dcm", dataset(arr), U.JPEGLSLossless, arr)
    want = np.asarray(read_dicom(path))
    np.testing.assert_array_equal(np.asarray(read_dicom(path.read_bytes())), want)
    np.testing.assert_array_equal(np.asarray(read_dicom(io.BytesIO(path.read_bytes()))), want)


@pytest.mark.parametrize("colour", [False, True])
def test_a_frame_far_larger_than_needed_is_averaged_down_before_windowing(tmp_path, colour):
    """draft_size (what `index` and `query` pass: the encoder's resize): a radiograph-sized frame comes back
    box-averaged to at least that size, close to the full-size image shrunk the same way; a frame under 4x the
    size needed is read whole."""
    from PIL import Image

    small = isic_rgb(0, size=128) if colour else busi_grey(0, size=128)
    big = np.asarray(Image.fromarray(small).resize((1100, 1400), Image.BICUBIC))
    arr = big if colour else to_12bit(big)
    tags = {} if colour else {"bits_stored": 12, "WindowCenter": 1800, "WindowWidth": 3000}
    path = write(tmp_path / "big.dcm", dataset(arr, **tags), arr=arr)
    whole = read_dicom(path)
    reduced = read_dicom(path, draft_size=256)
    assert whole.size == (1100, 1400) and reduced.size == (275, 350)  # 1100 // 256 = 4 x 4 blocks
    shrunk = np.asarray(whole.resize(reduced.size, Image.BOX), dtype=float)
    assert np.abs(np.asarray(reduced, dtype=float) - shrunk).mean() < 1.0
    assert read_dicom(path, draft_size=300).size == (1100, 1400)  # 1100 // 300 = 3: under 4x, read whole


def test_a_large_grey_jpeg2000_frame_is_decoded_at_a_reduced_resolution_level(tmp_path):
    """JPEG 2000 radiographs: Pillow's OpenJPEG decodes a wavelet level of the frame instead of all of it. The
    stored values come back at their own bit depth (Pillow scales a 12-bit stream to 16 bits), close to the whole
    frame averaged down; colour frames are left to pydicom."""
    from PIL import Image
    from pydicom import dcmread

    from medsearch.ingest.dicom.j2k_reduced import reduced_frame

    big = to_12bit(np.asarray(Image.fromarray(busi_grey(1, size=128)).resize((1100, 1400), Image.BICUBIC)))
    tags = {"bits_stored": 12, "WindowCenter": 1800, "WindowWidth": 3000}
    path = write(tmp_path / "big.dcm", dataset(big, **tags), U.JPEG2000Lossless, arr=big)
    ds = dcmread(path)
    half = reduced_frame(ds, str(ds.file_meta.TransferSyntaxUID), 0, 1, factor=2)
    box = big[:1400, :1100].reshape(700, 2, 550, 2).mean(axis=(1, 3))
    assert half.dtype == np.uint16 and half.shape == (700, 550) and half.max() < 4096
    assert np.abs(half - box).mean() < 0.01 * 4095  # a wavelet low-pass of the stored values, not 16x them
    reduced, whole = read_dicom(path, draft_size=256), read_dicom(path)
    assert reduced.size == (275, 350)  # level 2: a quarter of each side
    shrunk = np.asarray(whole.resize(reduced.size, Image.BOX), dtype=float)
    # the wavelet's own low-pass, not a box: within 2.5 grey levels of 255 on average (a wrong bit depth or level
    # would be off by tens)
    assert np.abs(np.asarray(reduced, dtype=float) - shrunk).mean() < 2.5
    rgb = np.asarray(Image.fromarray(isic_rgb(0, size=128)).resize((1100, 1400)))
    colour = dcmread(write(tmp_path / "rgb.dcm", dataset(rgb), U.JPEG2000Lossless, arr=rgb))
    assert reduced_frame(colour, str(colour.file_meta.TransferSyntaxUID), 0, 1, factor=4) is None
