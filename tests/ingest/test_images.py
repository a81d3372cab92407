import numpy as np
import pytest
from PIL import Image

from medsearch.errors import ImageError
from medsearch.ingest.images import MAX_PIXELS, array_to_image, load_image


def _save(tmp_path, name, img, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "RGB"])
def test_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    p = _save(tmp_path, f"x.{'jpg' if mode == 'CMYK' else 'png'}", img)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (20, 10)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    p = _save(tmp_path, "x16.png", Image.fromarray(arr))
    out = np.asarray(load_image(p))
    assert out.min() == 0 and out.max() == 255  # full range used, not 4095/65535 of it


def test_draft_mode_decodes_large_jpeg_smaller(tmp_path):
    p = _save(tmp_path, "big.jpg", Image.new("RGB", (1600, 1200), (10, 20, 30)))
    assert load_image(p).size == (1600, 1200)
    small = load_image(p, draft_size=224)
    assert 224 <= min(small.size) < 1200


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("P", (8, 8), c) for c in (1, 2, 3)]
    p = tmp_path / "a.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert load_image(p).size == (8, 8)


@pytest.mark.parametrize("content,reason", [
    (b"", "not a readable image"),
    (b"this is text, not a picture", "not a readable image"),
])
def test_bad_bytes(tmp_path, content, reason):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    p = _save(tmp_path, "t.jpg", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(p)


def test_missing_and_bomb(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    side = int(MAX_PIXELS ** 0.5) + 1
    p = _save(tmp_path, "bomb.png", Image.new("1", (side, side)))
    with pytest.raises(ImageError, match="too large"):
        load_image(p)


def test_array_to_image_dtypes():
    assert array_to_image(np.zeros((28, 28), np.uint8)).mode == "RGB"
    assert array_to_image(np.arange(28 * 28, dtype=np.float64).reshape(28, 28, 1)).size == (28, 28)
    with pytest.raises(ImageError):
        array_to_image(np.zeros((2, 2, 2, 2)))
