"""EfficientNet-Lite built without timm (medsearch/ingest/encoders/efficientnet_lite.py) is timm's
tf_efficientnet_lite model module for module: the same parameter names, order and shapes, and with the same
weights the same features to the bit (also in channels_last, as the encoder runs it)."""
from __future__ import annotations

import pytest
import torch

from medsearch.ingest.encoders.efficientnet_lite import EfficientNetLite

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_same_parameters_and_bit_identical_features_as_timm(variant):
    arch = f"tf_efficientnet_lite{variant}"
    reference = timm.create_model(arch, pretrained=False, num_classes=0).eval()
    ours = EfficientNetLite(arch).eval()
    theirs = reference.state_dict()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.items()]
    ours.load_state_dict(theirs)
    torch.manual_seed(variant)
    x = torch.randn(2, 3, 224 + 16 * variant, 200 + 16 * variant)  # odd sizes exercise the 'same' padding
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
        cl = x.contiguous(memory_format=torch.channels_last)
        assert torch.equal(ours.to(memory_format=torch.channels_last)(cl),
                           reference.to(memory_format=torch.channels_last)(cl))


def test_the_offline_encoder_is_built_without_importing_timm():
    """A fresh interpreter loads efficientnet-lite0 from its pip package without importing timm."""
    import subprocess
    import sys

    code = ("import sys; from medsearch.ingest.encoders import load_encoder; e = load_encoder('efficientnet-lite0'); "
            "print(e.dim, 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1280", "False"]
