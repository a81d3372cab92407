"""The self-supervised encoders (DINO, SwAV, SimCLR): registry data, random init, checkpoints in each layout their
authors publish loaded through --weights, strict refusals, and the download path offline. Nothing is downloaded:
checkpoints are written by the tests, with random weights stored as views of one small buffer."""

import argparse
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from medsearch.errors import WeightsUnavailableError
from medsearch.ingest import encoders as E
from medsearch.ingest.encoders import downloads

from ..conftest import raises_one_line, run_cli

DIMS = {"dino-vit-s16": 384, "dino-vit-b16": 768, "dino-resnet50": 2048, "swav-resnet50": 2048,
        "simclr-resnet50": 2048}


@pytest.fixture(scope="module")
def random_init():
    """Each encoder built once with its seeded random init (ViT-B takes seconds to build)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = E.load_encoder(name, random_init=True)
        return cache[name]
    return get


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random colour fields: unlike pixel noise, their pooled features differ from image to image."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((300, 240), Image.BILINEAR)
            for _ in range(n)]


def _batch(enc: E.Encoder, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.stack([enc.prepare(im) for im in _images(n, seed)])


def _normalised(enc: E.Encoder, batch: np.ndarray) -> torch.Tensor:
    p = enc.preprocess
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(p.mean).view(1, 3, 1, 1)) / torch.tensor(p.std).view(1, 3, 1, 1)


def _random_state(enc: E.Encoder, seed: int) -> dict:
    """Random weights for the encoder's model: every float tensor a view of one shared buffer, which torch.save
    writes once (a ViT-B checkpoint of ~10 MB instead of 350 MB), norm weights near 1, and batch-norm running
    statistics measured on a few images (train-mode forward), so a deep ResNet's features stay informative."""
    state = enc.model.state_dict()
    g = torch.Generator().manual_seed(seed)
    buffer = torch.randn(max(v.numel() for v in state.values()), generator=g).mul_(0.02)
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v
        elif k.endswith(".weight") and v.dim() == 1:
            out[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            out[k] = buffer[:v.numel()].view(v.shape)
    model = copy.deepcopy(enc.model).float().to(memory_format=torch.contiguous_format)
    model.load_state_dict(out)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        with torch.no_grad():
            model.train()(_normalised(enc, _batch(enc, 3, seed=99)))
        measured = model.state_dict()
        out.update({k: measured[k].clone() for k in out if k.endswith(("running_mean", "running_var"))})
    return out


def _expected(enc: E.Encoder, state: dict, batch: np.ndarray) -> np.ndarray:
    """The embeddings of the model the checkpoint was saved from: the built model with ``state`` in it."""
    reference = copy.deepcopy(enc.model).float().to(memory_format=torch.contiguous_format)
    reference.load_state_dict(state)
    with torch.inference_mode():
        return reference(_normalised(enc, batch)).numpy()


def _zeros(*shape) -> torch.Tensor:
    return torch.zeros(()).expand(shape)


def _dino_head(prefix: str) -> dict:
    """Keys of DINO's projection head (DINOHead: 3-layer MLP, weight-normalised last layer)."""
    return {f"{prefix}mlp.0.weight": _zeros(2048, 384), f"{prefix}mlp.0.bias": _zeros(2048),
            f"{prefix}last_layer.weight_g": _zeros(65536, 1), f"{prefix}last_layer.weight_v": _zeros(65536, 256)}


def _layouts(name: str, state: dict) -> dict:
    """The checkpoint layouts each encoder's authors publish, holding ``state`` as the backbone."""
    if name.startswith("dino-"):
        teacher = {**{f"backbone.{k}": v for k, v in state.items()}, **_dino_head("head.")}
        student = {f"module.{k}": v for k, v in teacher.items()}
        training = {"teacher": teacher, "student": student, "epoch": 100, "dino_loss": {"center": _zeros(1, 65536)},
                    "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536, lr=0.0005)}
        return {"plain": state, "teacher": training}
    if name == "swav-resnet50":
        head = {"projection_head.0.weight": _zeros(2048, 2048), "projection_head.0.bias": _zeros(2048),
                "projection_head.1.running_mean": _zeros(2048), "projection_head.3.weight": _zeros(128, 2048),
                "prototypes.weight": _zeros(3000, 128)}
        return {"module+head": {f"module.{k}": v for k, v in {**state, **head}.items()}}
    trunk = {f"_feature_blocks.{k}": v for k, v in state.items()}  # VISSL (simclr-resnet50)
    heads = {"0.clf.0.weight": _zeros(2048, 2048), "0.clf.2.weight": _zeros(128, 2048)}
    return {"vissl": {"classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": heads}}},
                      "phase_idx": 799, "iteration": 1}}


# --- registry ---------------------------------------------------------------------------------------

def test_registry_entries():
    for name, dim in DIMS.items():
        spec = E.get_spec(name)
        assert (spec.family, spec.dim, spec.offline) == ("ssl", dim, False)
        assert spec.pretrained.startswith("https://dl.fbaipublicfiles.com/")
        assert (spec.preprocess.resize, spec.preprocess.crop, spec.preprocess.norm) == (256, 224, "mean-std")
        assert spec.preprocess.mean == E.IMAGENET_MEAN
    for name in ("dino-vit-s16", "dino-vit-b16", "dino-resnet50"):
        pre = E.get_spec(name).preprocess
        assert (pre.interpolation, pre.std, E.get_spec(name).heads) == ("bicubic", E.IMAGENET_STD, ("head.",))
    swav = E.get_spec("swav-resnet50")
    assert (swav.preprocess.interpolation, swav.preprocess.std) == ("bilinear", (0.228, 0.224, 0.225))
    assert swav.pretrained.endswith("/deepcluster/swav_800ep_pretrain.pth.tar")
    assert swav.heads == ("projection_head.", "prototypes.")
    assert set(DIMS) <= set(E.list_encoders())


def test_encoders_command_lists_them():
    res = run_cli("encoders")
    assert res.exit_code == 0, res.output
    for name, dim in DIMS.items():
        assert any(line.startswith(name) and f"{dim}-d" in line for line in res.output.splitlines()), name


# --- random init ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(DIMS))
def test_random_init_gives_the_right_dim(random_init, name):
    enc = random_init(name)
    out = enc.encode(_batch(enc))
    assert out.shape == (2, DIMS[name]) and enc.dim == DIMS[name] and np.isfinite(out).all()
    assert enc.provenance()["family"] == "ssl" and enc.weights_source == "random-init"


def _dino_vit_reference(state: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """DINO's ViT forward (vision_transformer.py), written out: patches + CLS + position, pre-norm blocks with
    LayerNorm eps 1e-6, final norm, CLS token."""
    x = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(len(x), -1, -1), x], 1) + state["pos_embed"]
    (b, n, d), hd = x.shape, x.shape[2] // heads

    def norm(t, p):
        return F.layer_norm(t, (d,), state[p + ".weight"], state[p + ".bias"], eps=1e-6)

    def linear(t, p):
        return F.linear(t, state[p + ".weight"], state[p + ".bias"])

    for i in range(sum(k.endswith("norm1.weight") for k in state)):
        p = f"blocks.{i}."
        q, k, v = linear(norm(x, p + "norm1"), p + "attn.qkv").reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * hd ** -0.5).softmax(-1)
        x = x + linear((attn @ v).transpose(1, 2).reshape(b, n, d), p + "attn.proj")
        x = x + linear(F.gelu(linear(norm(x, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    return norm(x, "norm")[:, 0]


@pytest.fixture(scope="module")
def saved(random_init):
    """Per encoder, once: random weights in the built model's key names, a batch, and that model's embeddings."""
    cache = {}

    def get(name):
        if name not in cache:
            base = random_init(name)
            state, batch = _random_state(base, seed=123), _batch(base)
            cache[name] = state, batch, _expected(base, state, batch)
        return cache[name]
    return get


# --- checkpoints through --weights ------------------------------------------------------------------

# Each layout once (ViT-B and DINO's ResNet-50 training checkpoint take the same code paths as ViT-S's).
LAYOUTS = [("dino-vit-s16", "plain"), ("dino-vit-s16", "teacher"), ("dino-resnet50", "plain"),
           ("swav-resnet50", "module+head"), ("simclr-resnet50", "vissl")]


@pytest.mark.parametrize("name, layout", LAYOUTS)
def test_published_layout_reproduces_the_saved_model(tmp_path, random_init, saved, capsys, name, layout):
    state, batch, expected = saved(name)
    assert expected.std(axis=0).mean() > 0.05 * np.abs(expected).mean()  # images differ: the check means something
    path = tmp_path / f"{layout}.pth"
    torch.save(_layouts(name, state)[layout], path)
    enc = E.load_encoder(name, weights=str(path))
    out = enc.encode(batch)
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)
    assert not np.allclose(out, random_init(name).encode(batch), atol=1e-3)
    assert enc.weights_source == f"file:{path}" and len(enc.weights_sha256) == 64
    dropped = "dropped the training head's" in capsys.readouterr().err
    assert dropped == (layout in ("teacher", "module+head"))
    if name == "dino-vit-s16":  # and the timm model computes what DINO's own ViT-S/16 computes
        with torch.inference_mode():
            dino = _dino_vit_reference(state, _normalised(enc, batch), heads=6).numpy()
        np.testing.assert_allclose(out, dino, rtol=1e-3, atol=1e-4)


def test_checkpoint_that_does_not_fit_is_refused_in_one_line(tmp_path, saved):
    state = {f"module.{k}": v for k, v in saved("swav-resnet50")[0].items()}
    del state["module.layer1.0.conv1.weight"]
    state["module.layer2.0.conv1.weight"] = torch.zeros(3, 3)
    state["module.projection_hea.weight"] = torch.zeros(3)  # not one of the named head's keys: refused, not dropped
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    message = raises_one_line(lambda: E.load_encoder("swav-resnet50", weights=str(path)))
    for fragment in (str(path), "swav-resnet50", "missing keys layer1.0.conv1.weight",
                     "unexpected keys projection_hea.weight", "wrong shapes layer2.0.conv1.weight"):
        assert fragment in message


def test_dino_vit_checkpoint_of_the_other_size_is_refused(tmp_path, random_init):
    state = random_init("dino-vit-b16").model.state_dict()
    torch.save({"teacher": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "vitb.pth")
    message = raises_one_line(lambda: E.load_encoder("dino-vit-s16", weights=str(tmp_path / "vitb.pth")))
    assert "wrong shapes" in message and "cls_token" in message


# --- downloads, offline -------------------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, and an empty torch hub cache of our own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(downloads, "_reachable", lambda host: False)
    return tmp_path / "torch"


@pytest.mark.parametrize("name", list(DIMS))
def test_offline_download_fails_in_one_line(offline, name):
    with pytest.raises(WeightsUnavailableError) as info:
        E.load_encoder(name)
    message = str(info.value)
    assert "\n" not in message and "--weights" in message and name in message and "no internet" in message
    assert "efficientnet-lite0" in message


def test_cached_download_loads_offline(offline, saved):
    spec = E.get_spec("swav-resnet50")
    state, batch, expected = saved("swav-resnet50")
    path = downloads.ssl_cache_path(spec.pretrained)
    assert path.startswith(str(offline)) and path.endswith("swav_800ep_pretrain.pth.tar")
    (offline / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    enc = E.load_encoder("swav-resnet50")
    assert enc.weights_source == f"pretrained:{spec.pretrained}"
    np.testing.assert_allclose(enc.encode(batch), expected, rtol=1e-3, atol=1e-4)
    with open(path, "wb") as f:
        f.write(b"truncated download")
    message = raises_one_line(lambda: E.load_encoder("swav-resnet50"))
    assert path in message and "delete" in message


def test_vissl_cache_names_do_not_collide():
    simclr = downloads.ssl_cache_path(E.get_spec("simclr-resnet50").pretrained)
    assert simclr.endswith("simclr_rn50_800ep_simclr_8node_resnet_16_07_20.7e8feed1_model_final_checkpoint_phase799.torch")
