"""Image -> voxels encoder (METHOD §3): VGG taps -> per-tap conv heads -> separable space x feature readout ->
per-voxel branch mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainrecon.models import (
    backbones,  # noqa: F401 - registers the backbones that registry.backbone looks up
    registry,
)


@dataclass
class EncoderArch:
    n_voxels: int
    modality: str = "rgbd"
    arch: str = "vgg19"
    width: float = 1.0
    input_size: int = 112
    head_channels: int = 32
    dropout: float = 0.5
    train_backbone: bool = False
    depth_input: str = "grey"


def _head(in_ch: int, out_ch: int, kind: str) -> nn.Sequential:
    """BN -> [max-pool] -> conv -> ReLU -> BN, as the paper's heads (kind: pool_s2 | s2 | 1x1)."""
    layers: list[nn.Module] = [nn.BatchNorm2d(in_ch)]
    if kind == "pool_s2":
        layers.append(nn.MaxPool2d(2))
    conv = nn.Conv2d(in_ch, out_ch, 1) if kind == "1x1" else nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
    return nn.Sequential(*layers, conv, nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch))


class ChannelMix(nn.Module):
    """Per-voxel mix of the 288 patch features: out[b, v] = sum_c x[v, b, c] * w[v, c] + bias[v].

    The input is laid out voxel-major, (V, B, 288), so the mix is one batched matrix-vector product."""

    def __init__(self, n_voxels: int, n_features: int):
        super().__init__()
        self.chan_mix = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_voxels, n_features)))
        self.bias = nn.Parameter(torch.full((n_voxels,), 0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.chan_mix.unsqueeze(2)).squeeze(2).T + self.bias  # (V, B, 288) -> (B, V)


class Encoder(nn.Module):
    """`trunk`: another subject's encoder whose image pathway (backbone and heads) this one shares (models/subjects.py);
    the voxel readout (space maps, channel mixes, branch mix) is always this encoder's own."""

    def __init__(self, a: EncoderArch, backbone: nn.Module | None = None, trunk: "Encoder | None" = None):
        super().__init__()
        self.arch = a
        if trunk is not None:
            self.backbone, self.heads = trunk.backbone, trunk.heads
        else:  # `backbone`: the network with its weights (registry.build_backbone); None: random weights
            kind = registry.backbone(a.arch)
            net = backbone if backbone is not None else kind.build("none", a.modality, a.width, None)
            self.backbone = kind.taps(net, a.modality, a.depth_input)
        if trunk is None:
            self.backbone.requires_grad_(a.train_backbone)
            for part in getattr(self.backbone, "depth_parts", list)():
                part.requires_grad_(True)
            ch = self.backbone.channels()
            self.heads = nn.ModuleDict({"conv1": _head(ch["conv1"], a.head_channels, "pool_s2"),
                                        "conv2": _head(ch["conv2"], a.head_channels, "s2"),
                                        "conv3": _head(ch["conv3"], a.head_channels, "s2"),
                                        "conv4": _head(ch["conv4"], a.head_channels, "1x1")})
        hc = a.head_channels
        # Head outputs: conv1, conv2 at input/4; conv3, conv4 at input/8. 3x3 patches (no padding) shrink each by 2.
        self.sides = {"conv1": a.input_size // 4 - 2, "conv2": a.input_size // 4 - 2,
                      "conv3": a.input_size // 8 - 2, "conv4": a.input_size // 8 - 2}
        # One bias-free spatial map per distinct side, shared by the heads of that side.
        self.space_maps = nn.ModuleDict({str(s): nn.Linear(s * s, a.n_voxels, bias=False)
                                         for s in sorted(set(self.sides.values()))})
        self.dropout = nn.Dropout(a.dropout)
        self.chan_mixes = nn.ModuleList([ChannelMix(a.n_voxels, hc * 9) for _ in self.heads])
        self.branch_mix = nn.Parameter(torch.ones(a.n_voxels, len(self.heads)))

    def backbone_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """[0, 1] images of the modality -> named tap features. A frozen backbone's features are detached, except when
        the images themselves carry gradients (the decoder->encoder cycle backpropagates through the frozen encoder)."""
        x = registry.backbone(self.arch.arch).prepare(images, self.arch.modality, self.arch.input_size)
        if self.arch.train_backbone or images.requires_grad or any(p.requires_grad for p in self.backbone.parameters()):
            return self.backbone(x)
        with torch.no_grad():
            return {k: v.detach() for k, v in self.backbone(x).items()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        taps = self.backbone_features(images)
        out = 0
        for k, (name, head) in enumerate(self.heads.items()):
            h = head(taps[name])                                                    # (B, 32, s+2, s+2)
            patches = F.unfold(h, kernel_size=3)                                    # (B, 288, s*s)
            b, c, s = patches.shape
            space = self.space_maps[str(self.sides[name])].weight                   # (V, s*s)
            mapped = (space @ patches.permute(2, 0, 1).reshape(s, b * c)).view(-1, b, c)  # -> (V, B, 288)
            if self.dropout.p > 0:
                mapped = self.dropout(mapped)
            per_voxel = self.chan_mixes[k](mapped)                                  # (V, B, 288) -> (B, V)
            out = out + per_voxel * self.branch_mix[:, k].abs()
        return out

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def regularised_maps(self) -> list[tuple[torch.Tensor, int]]:
        """(weight as (V, side, side), side) per regularised map. Like the original's `out_shapes` quirk, the big map
        is counted for conv1..conv3 and the small one for conv4 (the original lists conv3 at the big side)."""
        big, small = self.sides["conv1"], self.sides["conv4"]
        sides = [big, big, big, small]
        return [(self.space_maps[str(s)].weight.view(-1, s, s), s) for s in sides]
