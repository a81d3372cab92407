"""`medsearch query --gallery out.png`: the contact sheet is written, sized for the query and its k neighbours
(wrapping past six tiles a row), shows the images (not blank tiles), and a bad path is refused up front."""
import numpy as np
from PIL import Image

from medsearch.search import gallery

from ..conftest import cli_error_line, index_tiny, run_cli


def _cell():
    return gallery.TILE + gallery.PAD, gallery.TILE + gallery.TEXT_LINES * gallery.LINE + gallery.PAD


def test_gallery_png_is_written_with_one_tile_per_result(tiny, folder_dataset, tmp_path):
    index_tiny(folder_dataset, tmp_path / "idx")
    out = tmp_path / "sheet.png"
    query = folder_dataset / "benign" / "benign_00.png"
    res = run_cli("query", query, "--index", tmp_path / "idx", "-k", 3, "--gallery", out)
    assert res.exit_code == 0, res.output
    assert out.exists()
    cell_w, cell_h = _cell()
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (gallery.PAD + 4 * cell_w, gallery.PAD + gallery.HEADER + cell_h)
        pixels = np.asarray(img.convert("L"), dtype=float)
    for i in range(4):  # the query and each neighbour: a real picture, not a flat grey "not readable" tile
        x, y = gallery.PAD + i * cell_w, gallery.PAD + gallery.HEADER
        assert pixels[y + 40:y + 120, x + 10:x + 150].std() > 5


def test_gallery_wraps_rows_for_several_queries(tiny, folder_dataset, tmp_path):
    index_tiny(folder_dataset, tmp_path / "idx")
    out = tmp_path / "sheet.png"
    queries = [folder_dataset / "benign" / "benign_01.png", folder_dataset / "malignant" / "malignant_02.png"]
    res = run_cli("query", *queries, "--index", tmp_path / "idx", "-k", 7, "--gallery", out)
    assert res.exit_code == 0, res.output
    cell_w, cell_h = _cell()
    with Image.open(out) as img:  # 8 tiles a query: two rows of at most six
        assert img.size == (gallery.PAD + 6 * cell_w, gallery.PAD + 2 * gallery.HEADER + 4 * cell_h)


def test_gallery_needs_a_png_path_in_an_existing_folder(tiny, folder_dataset, tmp_path):
    index_tiny(folder_dataset, tmp_path / "idx")
    query = folder_dataset / "benign" / "benign_00.png"
    res = run_cli("query", query, "--index", tmp_path / "idx", "--gallery", tmp_path / "sheet.jpg")
    assert "ending in .png" in cli_error_line(res)
    res = run_cli("query", query, "--index", tmp_path / "idx", "--gallery", tmp_path / "nowhere" / "sheet.png")
    assert "does not exist" in cli_error_line(res)
