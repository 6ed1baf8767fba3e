"""Image -> voxels encoder (METHOD §3): VGG taps -> per-tap conv heads -> separable space x feature readout ->
per-voxel branch mix.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainrecon.data.transforms import N_CHANNELS, normalize_for_network, resize
from brainrecon.models.vgg import ENCODER_TAPS, TappedFeatures, build_vgg


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


EFFNET_TAPS = {"conv1": 0, "conv2": 1, "conv3": 2, "conv4": 4}
"""EfficientNet-Lite0 stage (timm `blocks` index) read by each head: strides 2, 4, 8, 16 (16, 24, 40, 112 channels)."""


class DepthBranch(nn.Module):
    """A small trainable CNN on depth: two 3x3 convs (BN, ReLU) per stage, each stage halving the side, with the
    EfficientNet taps' channels at the same strides (2, 4, 8, 16), so its taps line up with the RGB ones."""

    CHANNELS = {"conv1": 16, "conv2": 24, "conv3": 40, "conv4": 112}

    def __init__(self):
        super().__init__()
        def conv(i, o, stride):
            return [nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
        stages, width = {}, 1
        for name, ch in self.CHANNELS.items():
            stages[name] = nn.Sequential(*conv(width, ch, 2), *conv(ch, ch, 1))
            width = ch
        self.stages = nn.ModuleDict(stages)

    def forward(self, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        out, x = {}, depth
        for name, stage in self.stages.items():
            x = out[name] = stage(x)
        return out


class EffNetTaps(nn.Module):
    """A frozen EfficientNet-Lite0 (timm tf_efficientnet_lite0) as the encoder's backbone: [0, 1] images at twice the
    encoder's input size -> the last block of stages 0, 1, 2 and 4 under the VGG tap names, so the heads, readout
    sizes and channel mix are the VGG19 encoder's. Depth as `depth_input` says (config.DEPTH_INPUTS): grey runs it
    through the same network as a grey image (rgbd: RGB and depth separately, each tap's channels concatenated). The
    network is always in eval mode (its BatchNorm statistics are part of the features, never updated)."""

    def __init__(self, net: nn.Module, modality: str, depth_input: str = "grey"):
        super().__init__()
        self.net, self.modality, self.depth_input = net, modality, depth_input
        last = max(EFFNET_TAPS.values())
        self.net.blocks = nn.Sequential(*list(net.blocks.children())[:last + 1])
        for unused in ("conv_head", "bn2", "global_pool", "classifier"):
            if hasattr(self.net, unused):
                setattr(self.net, unused, nn.Identity())
        if depth_input == "stem":   # the 4th input channel of the stem: the RGB kernels' mean to start, trainable
            self.depth_stem = copy.deepcopy(net.conv_stem)
            self.depth_stem.weight = nn.Parameter(net.conv_stem.weight.detach().mean(1, keepdim=True).clone())
            self.depth_stem.in_channels = 1
        elif depth_input == "branch":
            self.depth_branch = DepthBranch()   # its taps are concatenated with the RGB ones
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()             # the frozen network's BatchNorm statistics never move; the depth parts train
        return self

    def depth_parts(self) -> list[nn.Module]:
        """The trainable depth modules (none for grey), trained even when the network is frozen: new weights."""
        return [m for m in (getattr(self, "depth_stem", None), getattr(self, "depth_branch", None)) if m is not None]

    def _taps(self, x: torch.Tensor, depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.net.conv_stem((x - 0.5) / 0.5)  # EfficientNet-Lite's (x - 127) / 128 on [0, 1]
        if depth is not None:
            x = x + self.depth_stem((depth - 0.5) / 0.5)
        x = self.net.bn1(x)
        out, names = {}, {i: n for n, i in EFFNET_TAPS.items()}
        for i, stage in enumerate(self.net.blocks):
            x = stage(x)
            if i in names:
                out[names[i]] = x
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.modality == "rgb":
            return self._taps(images)
        depth = images[:, -1:]
        if self.depth_input == "stem":
            return self._taps(images[:, :3], depth)
        if self.depth_input == "branch":
            depth_taps = self.depth_branch((depth - 0.5) / 0.5)
        else:
            depth_taps = self._taps(depth.expand(-1, 3, -1, -1))
        if self.modality == "depth":
            return depth_taps
        rgb = self._taps(images[:, :3])
        return {k: torch.cat([rgb[k], depth_taps[k]], 1) for k in rgb}

    def channels(self) -> dict[str, int]:
        net = {n: self.net.blocks[i][-1].conv_pwl.out_channels if hasattr(self.net.blocks[i][-1], "conv_pwl")
               else self.net.blocks[i][-1].conv_pw.out_channels for n, i in EFFNET_TAPS.items()}
        if self.modality == "rgb" or self.depth_input == "stem":
            return net
        depth = DepthBranch.CHANNELS if self.depth_input == "branch" else net
        return depth if self.modality == "depth" else {n: net[n] + depth[n] for n in net}


def build_effnet(pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0: the ImageNet weights that ship with brainrecon, or a random init of the same shape."""
    if pretrained:
        from brainrecon.models.effnet import load_effnet_lite0
        return load_effnet_lite0()
    import timm
    return timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()


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
    def __init__(self, a: EncoderArch, backbone: nn.Module | None = None):
        super().__init__()
        self.arch = a
        if a.arch == "effnet-lite0":
            self.backbone = EffNetTaps(backbone if backbone is not None else build_effnet(False), a.modality,
                                       a.depth_input)
        else:
            vgg = backbone if backbone is not None else build_vgg(a.arch, N_CHANNELS[a.modality], a.width)
            self.backbone = TappedFeatures(vgg.features, ENCODER_TAPS[a.arch])
        self.backbone.requires_grad_(a.train_backbone)
        for part in getattr(self.backbone, "depth_parts", list)():
            part.requires_grad_(True)
        ch = self.backbone.channels()
        hc = a.head_channels
        self.heads = nn.ModuleDict({"conv1": _head(ch["conv1"], hc, "pool_s2"), "conv2": _head(ch["conv2"], hc, "s2"),
                                    "conv3": _head(ch["conv3"], hc, "s2"), "conv4": _head(ch["conv4"], hc, "1x1")})
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
        if self.arch.arch == "effnet-lite0":  # strides 2..16 at twice the size: the VGG taps' sides (strides 1..8)
            x = resize(images, 2 * self.arch.input_size, mode="bicubic")
        else:
            x = normalize_for_network(resize(images, self.arch.input_size, mode="bicubic"), self.arch.modality)
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
