"""The options of `medsearch index`, each with its one default, and the checks made on them before any work.

``IndexOptions`` is the single home of every default: ``index_dataset`` starts from it and the CLI reads its
click defaults from it. Each check names the flag that fixes the problem. The CLI imports this module to
build its options, so it imports nothing heavy (torch, h5py) until a check runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from numbers import Integral

from ..display import printable
from ..errors import MedsearchError
from ..options import is_real
from ..storage.schema import DEFAULT_MAX_INDEX_MEMORY, RECALL_TARGET

DEFAULT_MODEL = "clip-vit-b-32"
# Smallest centre crop any encoder can tell images apart at; larger sizes are bounded by memory (check_memory).
MIN_CROP = 16
# Decoded batches in memory at once: the one being encoded plus embed_rows' prefetch queue.
BATCHES_IN_MEMORY = 4
# The options that say how to read the dataset (datasets.scan's keywords).
SCAN_FIELDS = ("layout", "manifest", "image_col", "label_col", "label_cols", "group_col", "split_col", "images_dir",
               "task", "label_tag", "frames")


ENGINES = ("local", "ray")


def default_workers() -> int:
    """Decode threads when --workers is not given: one per CPU."""
    return os.cpu_count() or 2


@dataclass
class IndexOptions:
    """How to index a dataset. ``models`` are encoder names or specs (empty means the default model);
    ``weights`` are local checkpoints (PATH, or MODEL=PATH with several models); ``name`` is the store key of
    a single model; the dataset fields follow ``datasets.scan``; ``norm``/``resize``/``crop`` override the
    encoder's preprocessing; ``on_missing`` is 'skip' or 'zero' for unreadable images; ``commit_every`` is the
    seconds between store commits; ``moved_from`` is the dataset's old root when the same dataset moved;
    ``index_type`` 'auto' chooses exact search up to 100k rows, then the approximate index that fits
    ``max_memory`` bytes, tuned to ``recall_target`` (recall@10 against exact search); ``auto_compact``
    compacts the store at the end of a run that left much dead data (removed rows, superseded entries);
    ``engine`` 'local' embeds in this process, 'ray' in a pool of Ray actors (``ray_address`` an existing
    cluster, else Ray starts on this machine; ``gpus_per_worker`` GPUs per encoder actor) while this process
    stays the one writer; ``views`` (e.g. ('hflip',)) stores each model as the mean of its embeddings of the
    image and of those views, under the store key ``MODEL-hflip`` unless ``name`` is given; ``shards`` splits each model's index into that many row-range shard files, searched
    in parallel and merged as one index would answer. DICOM: ``window`` and ``frames`` say how pixels are read
    (dicom/pixel_options.py; recorded in the store, which `query` and `serve` follow); ``label_tag`` labels a
    plain tree of DICOM files by a header keyword; ``id_key`` is the file holding the secret of
    the keyed hashes of patient, study and series ids (dicom/identifiers.py; default: OUT.id-key beside the store)."""

    out: str | None = None
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    weights: tuple[str, ...] = ()
    random_init: bool = False
    name: str | None = None
    layout: str = "auto"
    manifest: str | None = None
    image_col: str | None = None
    label_col: str | None = None
    label_cols: list[str] | None = None
    group_col: str | None = None
    split_col: str | None = None
    images_dir: str | None = None
    task: str | None = None
    norm: str | None = None
    resize: int | None = None
    crop: int | None = None
    on_missing: str = "skip"
    batch_size: int = 64
    workers: int = default_workers()
    index_type: str = "auto"
    recall_target: float = RECALL_TARGET
    max_memory: int = DEFAULT_MAX_INDEX_MEMORY
    device: str = "cpu"
    commit_every: float = 300.0
    moved_from: str | None = None
    auto_compact: bool = True
    engine: str = "local"
    ray_address: str | None = None
    gpus_per_worker: float = 0.0
    shards: int = 1
    views: tuple[str, ...] = ()
    window: str = "file"
    frames: str = "middle"
    label_tag: str | None = None
    id_key: str | None = field(default=None, repr=False)  # a secret: never in a repr or log
    progress: bool = True

    def __post_init__(self):
        self.models = tuple(self.models) or (DEFAULT_MODEL,)
        self.weights = tuple(self.weights)
        self.views = tuple(self.views or ())

    def pixel_options(self):
        """How DICOM rows are read (dicom.PixelOptions), checked."""
        from .dicom.pixel_options import PixelOptions

        return PixelOptions(window=str(self.window), frames=str(self.frames)).check()

    def scan_options(self) -> dict:
        """The keywords of ``datasets.scan``."""
        return {f: getattr(self, f) for f in SCAN_FIELDS}

    def store_keys(self) -> dict[str, str]:
        """Model -> store key (``name`` for the one model, else derived from the model name)."""
        if self.name and len(self.models) > 1:
            raise MedsearchError("--name sets the store key of one model: index one --model at a time with it")
        from .encoders import check_views

        suffix = "".join(f"-{v}" for v in check_views(self.views))
        return {m: store_key(self.name, "--name") if self.name else store_key(m, "--model") + suffix for m in self.models}

    def weights_by_model(self) -> dict[str, str]:
        """Model -> checkpoint path, from ``weights`` (PATH for a single model, MODEL=PATH otherwise)."""
        out = {}
        for w in self.weights:
            model, sep, path = w.partition("=")
            if sep and model in self.models:
                out[model] = path
            elif len(self.models) == 1:
                out[self.models[0]] = w
            else:
                raise MedsearchError(f"with several --model, give --weights as MODEL=PATH (got '{w}')")
        return out

    def check(self) -> None:
        """Every numeric option checked before any work, each with the flag that fixes it."""
        resize, crop = self.resize, self.crop
        for flag, value in (("--resize", resize), ("--crop", crop)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise MedsearchError(f"{flag} must be a whole number of pixels, got {value!r}")
            if value < MIN_CROP:
                raise MedsearchError(f"{flag} {value} is too small: below {MIN_CROP} pixels no encoder can tell images "
                                     f"apart (the index would be useless); use at least {MIN_CROP}")
        if resize is not None and crop is not None and crop > resize:
            raise MedsearchError(f"--crop {crop} is larger than --resize {resize}: the centre crop must fit in the "
                                 "resized image")
        if int(self.batch_size) < 1 or int(self.workers) < 1:
            raise MedsearchError("--batch-size and --workers must be at least 1")
        self._check_engine()
        from ..storage.index_specs import check_max_memory, check_recall_target

        check_recall_target(self.recall_target)
        check_max_memory(self.max_memory)
        if not (is_real(self.commit_every) and self.commit_every >= 0):
            raise MedsearchError(f"--commit-every must be a number of seconds >= 0, got {self.commit_every!r}")
        from .encoders import device_for

        device_for(self.device)  # unknown device, or CUDA asked for where there is none
        self.pixel_options()


    def _check_engine(self) -> None:
        if self.engine not in ENGINES:
            raise MedsearchError(f"unknown --engine '{printable(str(self.engine))}': use {' or '.join(ENGINES)}")
        if self.engine != "ray" and (self.ray_address or self.gpus_per_worker):
            raise MedsearchError("--ray-address and --gpus-per-worker are options of the Ray engine: add --engine ray")
        if self.engine == "ray" and self.device != "cpu":
            raise MedsearchError("--device places the local engine's model; with --engine ray the encoder runs on the "
                                 "workers: use --gpus-per-worker to give them GPUs")
        if not (is_real(self.gpus_per_worker) and self.gpus_per_worker >= 0):
            raise MedsearchError(f"--gpus-per-worker must be a number >= 0 (e.g. 1, or 0.5 to share a GPU), "
                                 f"got {self.gpus_per_worker!r}")
        if self.engine == "ray":
            from .ray_engine import import_ray

            import_ray()  # installed? (before any work, not after the dataset scan)
        if isinstance(self.shards, bool) or not isinstance(self.shards, Integral) or self.shards < 1:
            raise MedsearchError(f"--shards must be a whole number >= 1, got {self.shards!r}")


def store_key(name: str, flag: str) -> str:
    """The store key (HDF5 group, index file, journal folder) of a model name or --name; refuses names that
    clean up to nothing or to a dot name ('.', '..', '.x'), which would alias the index folder itself."""
    from ..storage.store import model_key
    from .layouts import is_hidden

    key = model_key(name)
    if not key or is_hidden(key):
        raise MedsearchError(f"{flag} '{printable(name)}' gives no usable store key ('{printable(key)}'): use letters, "
                             "digits, '_', '-' and '.', starting with a letter or digit")
    return key


def check_memory(preprocess, batch_size: int) -> None:
    """Refuse a --crop / --resize / --batch-size whose decoded batches cannot fit in memory, before any work."""
    side = max(preprocess.resize, preprocess.crop)
    per_image = 3 * side * side * 4 * 2  # the resized image and its float tensor
    need = BATCHES_IN_MEMORY * batch_size * per_image
    avail = _available_memory()
    if avail and need > avail // 2:
        raise MedsearchError(f"--resize {preprocess.resize} / --crop {preprocess.crop} with --batch-size {batch_size} "
                             f"needs about {need / 2**30:.1f} GiB for its image batches, more than half of the "
                             f"{avail / 2**30:.1f} GiB available: use a smaller --crop, --resize or --batch-size")


def _available_memory() -> int | None:
    """MemAvailable (free memory plus reclaimable cache), else physical memory; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """'2G', '512M', '1.5G' or a number of bytes -> bytes; a one-line error naming --max-memory otherwise."""
    raw = str(text).strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in _UNITS and raw[-1:] else ""
    try:
        value = float(raw[:-1] if unit else raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise MedsearchError(f"--max-memory must be a size such as 512M, 2G or a number of bytes; got {text!r}")
    return int(value * _UNITS[unit])
