"""VGG16/19 backbones with named taps, and the loader for the release's depth / RGBD VGG checkpoints.

Tap indices live here and nowhere else. Encoder taps are the ReLUs that end conv blocks 1-4 (before each max-pool);
perceptual taps are the outputs of the five max-pools.
"""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import vgg as tv_vgg

from brainrecon.errors import UserError

Tap = namedtuple("Tap", "name index channels stride")
ENCODER_TAPS = {
    "vgg19": (Tap("conv1", 3, 64, 1), Tap("conv2", 8, 128, 2), Tap("conv3", 17, 256, 4), Tap("conv4", 26, 512, 8)),
    "vgg16": (Tap("conv1", 3, 64, 1), Tap("conv2", 8, 128, 2), Tap("conv3", 15, 256, 4), Tap("conv4", 22, 512, 8)),
}
PERCEPTUAL_TAPS = (Tap("pool1", 4, 64, 2), Tap("pool2", 9, 128, 4), Tap("pool3", 16, 256, 8),
                   Tap("pool4", 23, 512, 16), Tap("pool5", 30, 512, 32))
_CFG_KEY = {"vgg16": "D", "vgg19": "E"}


def build_vgg(arch: str, in_chans: int = 3, width: float = 1.0) -> nn.Module:
    """torchvision's VGG (same module indices and key names); `in_chans` sets the first conv, `width` scales all."""
    cfg = [c if c == "M" else max(8, int(c * width)) for c in tv_vgg.cfgs[_CFG_KEY[arch]]]
    model = tv_vgg.VGG(tv_vgg.make_layers(cfg), init_weights=True)
    if width != 1.0:
        model.classifier = nn.Identity()
    if in_chans != 3:
        model.features[0] = nn.Conv2d(in_chans, cfg[0], kernel_size=3, padding=1)
    return model


def clean_release_state_dict(state: dict) -> dict:
    """Unwrap `state_dict` and drop the DataParallel `module.` segment wherever it sits."""
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.replace("module.", ""): v for k, v in state.items()}


def load_strict(model: nn.Module, state: dict, path: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise UserError(f"{path}: checkpoint does not fit the model: missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}, shape mismatch {wrong[:3]}; check --modality and the file")
    model.load_state_dict(state, strict=True)


def load_release_vgg(path: Path, arch: str, in_chans: int) -> nn.Module:
    """A release `vgg1{6,9}_{rgbd,depth_only}*_norm_within_img_best.pth.tar` file as a torchvision VGG."""
    from brainrecon.weights import read_weights
    raw = read_weights(path, "release VGG weights: run `brainrecon fetch-data --only vgg` (or set "
                             "model.backbone_weights=none / loss.perceptual_net=vgg16-random)")
    model = build_vgg(arch, in_chans)
    load_strict(model, clean_release_state_dict(raw), path)
    return model


def load_imagenet_vgg(arch: str) -> nn.Module:
    """torchvision's ImageNet VGG; downloads once where there is internet, a clear error offline."""
    weights = {"vgg16": tv_vgg.VGG16_Weights.IMAGENET1K_V1, "vgg19": tv_vgg.VGG19_Weights.IMAGENET1K_V1}[arch]
    try:
        return getattr(tv_vgg, arch)(weights=weights)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, socket errors
        raise UserError(f"torchvision's ImageNet {arch} weights are not in the torch hub cache "
                        f"({torch.hub.get_dir()}) and could not be downloaded ({type(e).__name__}: {e}); connect to "
                        "the internet once (they are fetched and hash-checked on first use), or name a stand-in: "
                        "--set loss.perceptual_net=effnet-lite0 (shipped) or vgg16-random; for an encoder "
                        "--backbone-weights none") from None


def imagenet_vgg_cached(arch: str) -> bool:
    weights = {"vgg16": tv_vgg.VGG16_Weights.IMAGENET1K_V1, "vgg19": tv_vgg.VGG19_Weights.IMAGENET1K_V1}[arch]
    hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return hub.exists()


class TappedFeatures(nn.Module):
    """Runs `features` up to the last tap and returns a dict of named tap outputs."""

    def __init__(self, features: nn.Sequential, taps: tuple[Tap, ...]):
        super().__init__()
        last = max(t.index for t in taps)
        self.features = nn.Sequential(*list(features.children())[:last + 1])
        self.taps = taps
        self._names = {t.index: t.name for t in taps}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._names:
                out[self._names[i]] = x
        return out

    def channels(self) -> dict[str, int]:
        """Channels at each tap for this (possibly width-scaled) network."""
        out, ch = {}, None
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d):
                ch = layer.out_channels
            if i in self._names:
                out[self._names[i]] = ch
        return out
