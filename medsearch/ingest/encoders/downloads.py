"""Pretrained downloads through each library's own download and cache, failing fast when offline.

Before a download the weights' host is probed (``reachable``); offline, only a cached copy is used, so a
request for pretrained weights fails within seconds with what to do instead, and never falls back to random
weights. The self-supervised encoders (family 'ssl') have no library of their own: their authors' state dict is
fetched by URL into the torch hub cache (where ``torch.hub.load_state_dict_from_url`` keeps it too) and loaded
through the same strict key mapping as ``--weights`` (checkpoints.py).
"""
from __future__ import annotations

import os
import socket
import threading
import urllib.request
from contextlib import contextmanager
from urllib.parse import urlparse

import torch
from torch import nn

from ...errors import WeightsUnavailableError
from ._messages import one_line
from .builders import build
from .checkpoints import from_checkpoint
from .registry import REGISTRY, EncoderSpec

_PROBE_TIMEOUT_S = 3.0


def download_pretrained(spec: EncoderSpec) -> nn.Module:
    """The library's own download/cache path, failing in seconds when offline without a cached copy."""
    if spec.pretrained is None:
        raise WeightsUnavailableError(f"encoder {spec.name!r} has no pretrained weights to download: "
                                      "pass --weights PATH to a local checkpoint")
    online = _reachable(_download_host(spec))
    if spec.family == "ssl":
        return _ssl_pretrained(spec, online)
    try:
        if online:
            return build(spec, pretrained=True)[0]
        if spec.family == "torchvision" and not _in_torch_hub_cache(spec):
            raise FileNotFoundError("not in the torch hub cache")
        # Cache only: offline, the Hugging Face client would retry each file for a long time.
        with _hf_hub_offline():
            return build(spec, pretrained=True)[0]
    except Exception as e:  # any library/network error means: no weights
        raise _unavailable(spec, online, e) from e


def _unavailable(spec: EncoderSpec, online: bool, e: Exception) -> WeightsUnavailableError:
    reason = "no internet and no cached copy" if not online else one_line(e)
    offline = ", ".join(n for n, s in REGISTRY.items() if s.offline)
    return WeightsUnavailableError(
        f"cannot load pretrained weights for {spec.name!r} ({reason}): pass --weights PATH to a local "
        f"checkpoint, or use an offline encoder: {offline}, mobilenet-v2 --weights PATH")


def _ssl_pretrained(spec: EncoderSpec, online: bool) -> nn.Module:
    """The published state dict from the torch hub cache (downloaded first when online), loaded strictly."""
    try:
        path = _fetch_file(spec.pretrained, online)
    except Exception as e:  # any network or file system error means: no weights
        raise _unavailable(spec, online, e) from e
    try:
        return from_checkpoint(spec, path)[0]
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(f"the cached weights of {spec.name!r} do not load ({e}): delete {path} to "
                                      "download them again, or pass --weights PATH") from e


def _download_host(spec: EncoderSpec) -> str:
    if spec.family == "ssl":
        return urlparse(spec.pretrained).hostname
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


def _fetch_file(url: str, online: bool) -> str:
    """The cached copy of ``url``, downloaded first when online (to a temporary name, then renamed)."""
    path = ssl_cache_path(url)
    if not os.path.isfile(path):
        if not online:
            raise FileNotFoundError("not in the torch hub cache")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, progress=False)
    return path


def ssl_cache_path(url: str) -> str:
    """Where torch hub caches ``url``: its file name under ``<hub>/checkpoints``. VISSL names every final
    checkpoint alike (model_final_checkpoint_phase799.torch), so there the run's folder name comes first."""
    parts = urlparse(url).path.split("/")
    name = parts[-1] if not parts[-1].startswith("model_final_checkpoint") else f"{parts[-2]}_{parts[-1]}"
    return os.path.join(torch.hub.get_dir(), "checkpoints", name)


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

