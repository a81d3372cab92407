"""Model builders: one per library family, each returning the classifier-free model that gives pooled features.

``build(spec, pretrained)`` also names the checkpoint key prefixes of the removed classifier, so a full
checkpoint (classifier included) still loads strictly (see checkpoints.py).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import MedsearchError
from .registry import EncoderSpec


def build(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
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


def _efficientnet_lite_model(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
    """Built without timm (efficientnet_lite.py: the same model, a second faster to start); timm still
    fetches and builds it when its weights must be downloaded."""
    if pretrained:
        return _timm_model(spec, pretrained)
    from .efficientnet_lite import EfficientNetLite

    return EfficientNetLite(spec.arch), ("classifier.",)


def _ssl_model(spec: EncoderSpec, pretrained: bool) -> tuple[nn.Module, tuple[str, ...]]:
    """The backbone the self-supervised weights were trained in, classifier-free; its weights always come from a
    state dict file (downloads.py fetches the published one), so ``pretrained`` builds nothing more.

    DINO's ViT is timm's ViT (same keys, LayerNorm eps 1e-6, qkv bias, CLS token after the final norm);
    ``dynamic_img_size`` resamples the position embedding for another ``--crop``, as DINO's own model does.
    DINO, SwAV and VISSL's ResNet-50 are torchvision's (SwAV's extra pad layer plus padding 2 equals padding 3).
    """
    if spec.arch.startswith("vit_"):
        import timm

        return timm.create_model(spec.arch, pretrained=False, num_classes=0, dynamic_img_size=True), ()
    from torchvision import models

    model = models.get_model(spec.arch, weights=None)
    model.fc = nn.Identity()
    return model, ("fc.",)


_BUILDERS = {"open_clip": _open_clip_model, "torchvision": _torchvision_model,
             "timm": _timm_model, "efficientnet_lite": _efficientnet_lite_model, "ssl": _ssl_model}

