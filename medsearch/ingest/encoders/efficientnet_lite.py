"""EfficientNet-Lite built with torch alone, module for module as timm's ``tf_efficientnet_lite0..4``: the same
parameter names in the same order and the same TensorFlow "same" padding, so the pip packages' weights load
into it exactly as into timm's model and give bit-identical features (tests/ingest/test_efficientnet_lite.py
checks it against timm). It exists for start-up time alone: importing timm, and the torchvision it imports, was
over a second of every cold `medsearch query` (benchmarks/RESULTS.md, issue 15). timm still builds the model
when weights must be downloaded (``pretrained=True``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (block, repeats, kernel, stride, expansion, output channels) per stage: timm's _gen_efficientnet_lite
STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
          ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320))
# (channel multiplier, depth multiplier) per variant
VARIANTS = {f"tf_efficientnet_lite{i}": m for i, m in
            enumerate(((1.0, 1.0), (1.0, 1.1), (1.1, 1.2), (1.2, 1.4), (1.4, 1.8)))}
STEM, HEAD, BN_EPS = 32, 1280, 1e-3   # lite variants keep stem and head widths fixed


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """timm's channel rounding: to a multiple of ``divisor``, never below ``round_limit`` of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


class Conv2dSame(nn.Conv2d):
    """TensorFlow 'same' padding computed from the input size (strided convolutions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.size()[-2:]
        pad_h = _same(ih, self.kernel_size[0], self.stride[0])
        pad_w = _same(iw, self.kernel_size[1], self.stride[1])
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


def _same(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def conv(in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution padded 'same': statically at stride 1, from the input size when strided."""
    if stride == 1:
        return nn.Conv2d(in_chs, out_chs, kernel, 1, padding=(kernel - 1) // 2, groups=groups, bias=False)
    return Conv2dSame(in_chs, out_chs, kernel, stride, groups=groups, bias=False)


class BatchNormAct(nn.BatchNorm2d):
    """Batch norm followed by ReLU6, or by nothing (timm's BatchNormAct2d, which holds the same tensors)."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int):
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = conv(in_chs, in_chs, kernel, stride, groups=in_chs)
        self.bn1 = BatchNormAct(in_chs)
        self.conv_pw = conv(in_chs, out_chs, 1)
        self.bn2 = BatchNormAct(out_chs, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = make_divisible(in_chs * expansion)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = conv(in_chs, mid, 1)
        self.bn1 = BatchNormAct(mid)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct(mid)
        self.conv_pwl = conv(mid, out_chs, 1)
        self.bn3 = BatchNormAct(out_chs, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return out + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """The classifier-free network: pooled HEAD-wide features."""

    def __init__(self, arch: str):
        super().__init__()
        width, depth = VARIANTS[arch]
        self.conv_stem = conv(3, STEM, 3, 2)
        self.bn1 = BatchNormAct(STEM)
        stages, in_chs = [], STEM
        for i, (kind, repeats, kernel, stride, expansion, out) in enumerate(STAGES):
            out = make_divisible(out * width)
            n = repeats if i in (0, len(STAGES) - 1) else math.ceil(repeats * depth)
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                blocks.append(DepthwiseSeparable(in_chs, out, kernel, s) if kind == "ds"
                              else InvertedResidual(in_chs, out, kernel, s, expansion))
                in_chs = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = conv(in_chs, HEAD, 1)
        self.bn2 = BatchNormAct(HEAD)
        self.num_features = HEAD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
