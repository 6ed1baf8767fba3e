"""The encoder's backbones, each registered under its `model.arch` name (declared in brainrecon/config/networks.py):
the network with the weights `model.backbone_weights` names, the module that returns its taps under the names the heads
read (conv1..conv4), and the input it reads. Built by name through `registry.backbone` / `registry.build_backbone`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from brainrecon.data import layout
from brainrecon.data.transforms import N_CHANNELS, normalize_for_network, resize
from brainrecon.errors import UserError
from brainrecon.models.effnet_taps import EffNetTaps, build_effnet
from brainrecon.models.registry import check_complete, register_backbone
from brainrecon.models.vgg import ENCODER_TAPS, TappedFeatures, build_vgg, load_imagenet_vgg, load_release_vgg

# --- VGG16 / VGG19 (the paper's): torchvision's layout, taps at the ReLUs that end conv blocks 1-4 -------------------

def vgg_with_weights(arch: str, weights: str, modality: str, width: float, root: Path | None) -> nn.Module:
    """The release's depth / RGBD VGG (its own input channels), torchvision's ImageNet VGG (rgb) or a random one."""
    if weights == "release":
        if modality == "rgb":
            raise UserError("--backbone-weights release has no rgb VGG in the release; use imagenet (or none)")
        return load_release_vgg(layout.release_vgg_file(root, arch, modality), arch, N_CHANNELS[modality])
    if weights == "imagenet":
        return load_imagenet_vgg(arch)
    return build_vgg(arch, N_CHANNELS[modality], width)


def vgg_taps(arch: str):
    """The network -> its encoder taps (models/vgg.py ENCODER_TAPS)."""
    def taps(net: nn.Module, modality: str, depth_input: str) -> nn.Module:
        return TappedFeatures(net.features, ENCODER_TAPS[arch])
    return taps


def vgg_input(images: torch.Tensor, modality: str, input_size: int) -> torch.Tensor:
    """[0, 1] images -> bicubic resize to input_size, then the network's per-channel normalisation."""
    return normalize_for_network(resize(images, input_size, mode="bicubic"), modality)


@register_backbone("vgg16", taps=vgg_taps("vgg16"), prepare=vgg_input)
def vgg16(weights: str, modality: str, width: float, root: Path | None) -> nn.Module:
    return vgg_with_weights("vgg16", weights, modality, width, root)


@register_backbone("vgg19", taps=vgg_taps("vgg19"), prepare=vgg_input)
def vgg19(weights: str, modality: str, width: float, root: Path | None) -> nn.Module:
    return vgg_with_weights("vgg19", weights, modality, width, root)


# --- EfficientNet-Lite0 (a stand-in): the shipped ImageNet weights, depth as model.depth_input says ------------------

def effnet_input(images: torch.Tensor, modality: str, input_size: int) -> torch.Tensor:
    """Twice the input size: its strides 2..16 then give the VGG taps' sides (strides 1..8); it normalises itself."""
    return resize(images, 2 * input_size, mode="bicubic")


@register_backbone("effnet-lite0", taps=EffNetTaps, prepare=effnet_input)
def effnet_lite0(weights: str, modality: str, width: float, root: Path | None) -> nn.Module:
    return build_effnet(weights == "imagenet")


check_complete("backbone")
