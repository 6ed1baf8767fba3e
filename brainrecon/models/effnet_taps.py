"""The EfficientNet-Lite0 backbone of the encoder (arch effnet-lite0): the frozen network's taps under the VGG tap
names, and the small trainable depth branch that lines up with them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from brainrecon.models.effnet import load_effnet_lite0

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
    sizes and channel mix are the VGG19 encoder's. Depth as `depth_input` says (config.schema.DEPTH_INPUTS): grey runs
    it through the same network as a grey image (rgbd: RGB and depth separately, each tap's channels concatenated). The
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
        return load_effnet_lite0()
    import timm  # heavy; only the effnet-lite0 encoder needs it
    return timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
