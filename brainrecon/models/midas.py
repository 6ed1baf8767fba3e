"""MiDaS v2.1 (large: ResNeXt-101 32x8d, small: EfficientNet-Lite3), built so that the published checkpoints load
strictly by key name: `pretrained.layer1..4` (encoder stages), `scratch.layer*_rn`, `scratch.refinenet4..1`,
`scratch.output_conv`. Encoders come from torchvision and timm, created without downloading anything.
Output: relative inverse depth (larger = nearer), non-negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainrecon.errors import UserError


@dataclass(frozen=True)
class MidasSpec:
    features: int
    net_size: int
    encoder_channels: tuple[int, int, int, int]
    expand: bool


SPECS = {"large": MidasSpec(256, 384, (256, 512, 1024, 2048), False),
         "small": MidasSpec(64, 256, (32, 48, 136, 384), True)}


class Interpolate(nn.Module):
    def __init__(self, scale: float, align_corners: bool = False):
        super().__init__()
        self.scale, self.align_corners = scale, align_corners

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=self.align_corners)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """(path [+ unit1(skip)]) -> unit2 -> x2 bilinear (aligned corners) [-> 1x1 out_conv, halving when expanding]."""

    def __init__(self, ch: int, out_conv: bool, expand: bool):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(ch)
        self.resConfUnit2 = ResidualConvUnit(ch)
        self.out_conv = nn.Conv2d(ch, ch // 2 if expand else ch, 1) if out_conv else None

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = F.interpolate(self.resConfUnit2(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x) if self.out_conv is not None else x


def _large_encoder() -> nn.Module:
    from torchvision.models import resnext101_32x8d
    r = resnext101_32x8d(weights=None)
    enc = nn.Module()
    enc.layer1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
    enc.layer2, enc.layer3, enc.layer4 = r.layer2, r.layer3, r.layer4
    return enc


def _small_encoder() -> nn.Module:
    import timm
    e = timm.create_model("tf_efficientnet_lite3", pretrained=False, exportable=True)
    enc = nn.Module()
    # timm fuses the stem activation into bn1; an Identity keeps MiDaS's index of the later modules
    enc.layer1 = nn.Sequential(e.conv_stem, e.bn1, nn.Identity(), e.blocks[0], e.blocks[1])
    enc.layer2 = nn.Sequential(e.blocks[2])
    enc.layer3 = nn.Sequential(e.blocks[3], e.blocks[4])
    enc.layer4 = nn.Sequential(e.blocks[5], e.blocks[6])
    return enc


class MidasNet(nn.Module):
    def __init__(self, size: str):
        super().__init__()
        if size not in SPECS:
            raise UserError(f"--model {size!r}; choose small or large")
        s = self.spec = SPECS[size]
        self.size = size
        self.pretrained = _large_encoder() if size == "large" else _small_encoder()
        widths = [s.features * 2 ** i for i in range(4)] if s.expand else [s.features] * 4
        self.scratch = nn.Module()
        for i, (cin, cout) in enumerate(zip(s.encoder_channels, widths), 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        for i, w in enumerate(widths, 1):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(w, out_conv=s.expand, expand=s.expand and i > 1))
        f = s.features
        head = [nn.Conv2d(f, f // 2, 3, padding=1), Interpolate(2), nn.Conv2d(f // 2, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 1, 1), nn.ReLU()]
        if s.expand:
            self.scratch.activation = nn.ReLU()
            head.append(nn.Identity())
        self.scratch.output_conv = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, s = self.pretrained, self.scratch
        l1 = p.layer1(x)
        l2 = p.layer2(l1)
        l3 = p.layer3(l2)
        l4 = p.layer4(l3)
        path = s.refinenet4(s.layer4_rn(l4))                                        # (B, C4, H/16, W/16)
        path = s.refinenet3(path, s.layer3_rn(l3))
        path = s.refinenet2(path, s.layer2_rn(l2))
        path = s.refinenet1(path, s.layer1_rn(l1))                                  # (B, F, H/2, W/2)
        return s.output_conv(path).squeeze(1)                                       # (B, H, W)


def load_midas_v21(path: Path, size: str) -> MidasNet:
    """A published MiDaS v2.1 checkpoint (a bare state dict, or one under `model`), loaded strictly."""
    from brainrecon.models.vgg import load_strict
    from brainrecon.weights import read_weights
    state = read_weights(path, f"MiDaS {size} weights: run `brainrecon fetch-data --only midas` or pass --weights PATH")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model = MidasNet(size)
    own = model.state_dict()
    # num_batches_tracked may be absent from the published files; BatchNorm works without it
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in state}, **state}
    load_strict(model, state, path)
    return model.eval()
