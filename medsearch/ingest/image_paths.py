"""Where the images a CSV manifest names are: the image folder, names given without extension, and names
that must not be read (absolute paths, paths escaping the dataset folder, hidden files)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MedsearchError
from .images import IMAGE_EXTENSIONS
from .layouts import is_hidden
from .sources import unreadable_uri, uri_scheme


def image_folder(root: Path, images_dir: str | None) -> Path:
    """The folder manifest names are relative to: --images-dir, else DATASET/images if present, else DATASET."""
    if images_dir:
        p = Path(images_dir) if os.path.isabs(images_dir) else root / images_dir
        if not p.is_dir():
            raise MedsearchError(f"--images-dir '{images_dir}' is not a folder")
        return p
    return root / "images" if (root / "images").is_dir() else root


def stem_index(folder: Path) -> dict[str, str]:
    """File stem -> file name for every image directly in ``folder``, for names given without extension."""
    out: dict[str, str] = {}
    try:
        for e in os.scandir(folder):
            stem, ext = os.path.splitext(e.name)
            if ext.lower() in IMAGE_EXTENSIONS + (".dcm",) and not is_hidden(e.name):
                out.setdefault(stem, e.name)
    except OSError:
        pass
    return out


def resolve(image_root: Path, root: Path, name: str, listing: dict[str, str]) -> tuple[str, str | None]:
    """Relative path (to ``root``) of the image a manifest names, and why it is missing (None if found). A URI
    (file://, s3://, gs://) is kept as given and read where it is by the process that embeds it."""
    if uri_scheme(name):
        return name, unreadable_uri(name)
    if os.path.isabs(name):
        return name, ("absolute path in manifest; paths must be relative to the dataset folder, or URIs read "
                      "where they are (file:///shared/x.png, s3://bucket/x.png)")
    candidate = image_root / name
    if not os.path.splitext(name)[1] and name in listing:
        candidate = image_root / listing[name]
    # Lexical check of what the manifest says: a symlink placed inside the dataset by its owner may point anywhere.
    root_abs, cand_abs = os.path.normpath(os.path.abspath(root)), os.path.normpath(os.path.abspath(candidate))
    if not cand_abs.startswith(root_abs + os.sep):
        return name, "path escapes the dataset folder"
    if any(is_hidden(part) for part in Path(os.path.relpath(cand_abs, root_abs)).parts):
        return os.path.relpath(candidate, root), "hidden file or folder (names starting with '.' are never read)"
    if not os.path.lexists(candidate):
        return os.path.relpath(candidate, root), "file not found"
    return os.path.relpath(candidate, root), None

