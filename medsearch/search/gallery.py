"""A contact sheet of query results for reports (`medsearch query IMAGE --gallery out.png`): per query image, a
header line (model, k-NN vote), the query itself, then its neighbours in rank order, each with its rank,
labels, cosine similarity and id.

Neighbour images are read from the store's own rows (their source under the dataset root, or their array
in the .npz the store was built from), decoded with `index`'s guards; one that can no longer be read is
drawn as a grey tile saying so, never left out, so the sheet's ranks always match the printed results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ImageError, MedsearchError
from ..ingest.images import array_to_image
from ..ingest.dicom.pixel_options import pixel_options_of
from ..ingest.sources import open_stored_file, read_query_image
from ..storage.store import StoreData
from .query_results import QueryResult

TILE = 160  # pixels of each image square
PAD = 10
TEXT_LINES = 3
LINE = 16
HEADER = 26
COLUMNS = 6  # tiles per row, the query's included
BACKGROUND, INK, MUTED, QUERY_EDGE = (255, 255, 255), (29, 36, 48), (93, 107, 126), (31, 95, 191)


def sheet_size(n_tiles_per_query: list[int]) -> tuple[int, int]:
    """(width, height) of a sheet whose queries show these numbers of tiles (query + neighbours) each."""
    cell_w, cell_h = TILE + PAD, TILE + TEXT_LINES * LINE + PAD
    cols = min(COLUMNS, max(n_tiles_per_query))
    rows = sum(-(-n // COLUMNS) for n in n_tiles_per_query)
    return PAD + cols * cell_w, PAD + len(n_tiles_per_query) * HEADER + rows * cell_h


def check_gallery_path(out: str | Path) -> Path:
    """``out`` as a Path, or a MedsearchError when it cannot be the sheet (checked before searching)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise MedsearchError(f"--gallery writes a PNG: give a file name ending in .png (got '{out.name}')")
    if not out.parent.is_dir():
        raise MedsearchError(f"--gallery: folder '{out.parent}' does not exist: create it or give another path")
    return out


def write_gallery(results: list[QueryResult], data: StoreData, out: str | Path) -> tuple[int, int]:
    """Draw the contact sheet of ``results`` (searched in ``data``) to the PNG ``out``; returns its size."""
    out = check_gallery_path(out)
    counts = [1 + len(r.neighbours) for r in results]
    sheet = Image.new("RGB", sheet_size(counts), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, bold = _font(12), _font(14)
    y, arrays = PAD, {}
    for res in results:
        vote = ", ".join(f"{n} {s:.0%}" for n, s in sorted(res.vote.items(), key=lambda kv: -kv[1]) if s > 0)
        draw.text((PAD, y + 4), _fit(f"model {res.model} · k-NN vote: {vote}", sheet.width - 2 * PAD, bold, draw),
                  fill=INK, font=bold)
        y += HEADER
        tiles = [(_query_image(res.query, data.attrs), [("query", INK), (Path(res.query).name, MUTED)], True)]
        for n in res.neighbours:
            tiles.append((_stored_image(data, n.row, arrays), [(f"#{n.rank}  similarity {n.similarity:.3f}", INK),
                                                      (", ".join(n.labels) or "-", INK), (n.id, MUTED)], False))
        y = _draw_tiles(sheet, draw, tiles, y, font)
    sheet.save(out, format="PNG")
    return sheet.size


def _draw_tiles(sheet, draw, tiles, y: int, font) -> int:
    """Tiles of one query, COLUMNS a row, from height ``y``; returns the height below them."""
    cell_h = TILE + TEXT_LINES * LINE + PAD
    for i, (img, lines, is_query) in enumerate(tiles):
        x, top = PAD + (i % COLUMNS) * (TILE + PAD), y + (i // COLUMNS) * cell_h
        if img is None:
            draw.rectangle((x, top, x + TILE - 1, top + TILE - 1), fill=(200, 200, 200))
            draw.text((x + 8, top + TILE // 2 - 6), "image not readable", fill=INK, font=font)
        else:
            img = img.copy()
            img.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
            if img.width < TILE and img.height < TILE:  # small images (e.g. 28 px): scale up to the tile
                scale = TILE / max(img.size)
                img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                 Image.Resampling.BICUBIC)
            draw.rectangle((x, top, x + TILE - 1, top + TILE - 1), fill=(17, 17, 17))
            sheet.paste(img, (x + (TILE - img.width) // 2, top + (TILE - img.height) // 2))
        if is_query:
            draw.rectangle((x - 2, top - 2, x + TILE + 1, top + TILE + 1), outline=QUERY_EDGE, width=3)
        for j, (text, colour) in enumerate(lines[:TEXT_LINES]):
            draw.text((x, top + TILE + 3 + j * LINE), _fit(text, TILE, font, draw), fill=colour, font=font)
    rows = -(-len(tiles) // COLUMNS)
    return y + rows * cell_h


def _query_image(path: str, store_attrs: dict) -> Image.Image | None:
    try:
        return read_query_image(path, store_attrs)
    except (ImageError, OSError):
        return None


def _stored_image(data: StoreData, row: int, arrays: dict) -> Image.Image | None:
    """The image of stored ``row``, or None when it cannot be read any more (moved, deleted, damaged);
    ``arrays`` keeps the .npz splits already read."""
    root, source = data.attrs.get("dataset_root", ""), data.sources[row]
    try:
        if root.endswith(".npz"):
            split, j = source.rsplit("/", 1)
            if split not in arrays:
                with np.load(root, allow_pickle=False) as z:
                    arrays[split] = z[f"{split}_images"]
            return array_to_image(arrays[split][int(j)])
        return open_stored_file(root, source, pixels=pixel_options_of(data.attrs))
    except (ImageError, KeyError, ValueError, OSError):
        return None


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font only
        return ImageFont.load_default()


def _fit(text: str, width: int, font, draw) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
