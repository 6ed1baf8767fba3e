"""The frozen feature network behind the perceptual loss and the perceptual metrics: one interface, several sources.

vgg16-release: the release's depth / RGBD VGG16 (METHOD §4); vgg16-imagenet: torchvision's (rgb); vgg16-random: a
seeded random-init VGG16; effnet-lite0: real ImageNet features that ship in a wheel (models/effnet.py), available on
every machine (rgb; a depth map is fed as a grey image). `auto` picks the
first available in that order.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from brainrecon.data import layout
from brainrecon.data.transforms import N_CHANNELS, normalize_for_network
from brainrecon.errors import UserError
from brainrecon.models.vgg import (PERCEPTUAL_TAPS, TappedFeatures, build_vgg, imagenet_vgg_cached,
                                   load_imagenet_vgg, load_release_vgg)


class PerceptualNet(nn.Module):
    """[0, 1] images of a modality -> dict of the five post-pool feature maps; frozen, always in eval mode."""

    def __init__(self, vgg: nn.Module, modality: str, name: str):
        super().__init__()
        self.features = TappedFeatures(vgg.features, PERCEPTUAL_TAPS)
        self.modality, self.name = modality, name
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # never leaves eval mode
        return super().train(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features(normalize_for_network(images, self.modality))


def resolve_kind(kind: str, modality: str, root: Path) -> str:
    if kind != "auto":
        return kind
    if modality != "rgb" and layout.release_vgg_file(root, "vgg16", modality).exists():
        return "vgg16-release"
    if modality == "rgb" and imagenet_vgg_cached("vgg16"):
        return "vgg16-imagenet"
    return "vgg16-random"


def build_perceptual_net(kind: str, modality: str, root: Path, seed: int = 0,
                         width: float = 1.0) -> PerceptualNet | None:
    kind = resolve_kind(kind, modality, root)
    if kind == "none":
        return None
    if kind == "effnet-lite0":
        from brainrecon.models.effnet import EffNetFeatures
        return EffNetFeatures(modality, size=None)
    if kind == "vgg16-release":
        if modality == "rgb":
            raise UserError("perceptual_net=vgg16-release has no rgb network in the release; use vgg16-imagenet")
        vgg = load_release_vgg(layout.release_vgg_file(root, "vgg16", modality), "vgg16", N_CHANNELS[modality])
    elif kind == "vgg16-imagenet":
        if modality != "rgb":
            raise UserError(f"perceptual_net=vgg16-imagenet takes rgb only, not {modality}; use vgg16-release")
        vgg = load_imagenet_vgg("vgg16")
    else:
        state = torch.get_rng_state()
        torch.manual_seed(seed)
        vgg = build_vgg("vgg16", N_CHANNELS[modality], width)
        torch.set_rng_state(state)
    return PerceptualNet(vgg, modality, kind)
