"""Checkpoints with the published key names, shapes and dtypes and random values, for the rehearsal world only.

The networks are built on torch's `meta` device (shapes without memory), and each tensor is written as a view of a
small random storage (a Hankel-like pattern: element [o, rest] reads storage[o + offset(rest)]), so that a 548 MB
VGG19 file is a few kB on disk yet loads, strictly and by key, into the full network. Scales follow each layer's
fan-in (He), batch norms are the identity: a forward pass stays finite. Nothing in brainrecon reads these in place of
real weights by itself: only the rehearsal writes them, into folders the user names.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn

from brainrecon.atomic import write_atomic
from brainrecon.data import layout

RELEASE_VGGS = (("vgg16", "depth", False), ("vgg16", "depth", True), ("vgg16", "rgbd", True),
                ("vgg19", "depth", True), ("vgg19", "rgbd", True))
"""(arch, modality, large) of the five release VGG files (brainrecon/sources/release_files.py, group vgg)."""


def _compact(name: str, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A tensor of t's shape and dtype whose storage holds shape[0] - 1 + prod(shape[1:]) values: each output unit's
    weights are independent draws, units are shifted copies of one another."""
    if t.dim() == 0:
        return torch.zeros((), dtype=t.dtype)
    if not t.dtype.is_floating_point:
        return torch.zeros(1, dtype=t.dtype).expand(t.shape)
    leaf = name.rsplit(".", 1)[-1]
    if t.dim() == 1:
        one = leaf in ("running_var",) or (leaf == "weight")          # norm layers: identity
        return torch.full((1,), 1.0 if one else 0.0, dtype=t.dtype).expand(t.shape)
    fan_in = math.prod(t.shape[1:])
    storage = torch.randn(t.shape[0] - 1 + fan_in, generator=gen, dtype=torch.float32) * math.sqrt(2 / fan_in)
    strides = (1,) + tuple(math.prod(t.shape[k + 1:]) for k in range(1, t.dim()))
    return storage.to(t.dtype).as_strided(t.shape, strides)


def compact_state(model: nn.Module, seed: int = 0, prefix_map=None) -> dict[str, torch.Tensor]:
    """The model's state dict (keys as `prefix_map(key)`), every tensor a compact random view."""
    gen = torch.Generator().manual_seed(seed)
    return {(prefix_map(k) if prefix_map else k): _compact(k, v, gen) for k, v in model.state_dict().items()}


def _save(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def release_vgg_checkpoint(arch: str, modality: str, seed: int = 0) -> dict:
    """A release `vgg1{6,9}_{rgbd,depth_only}*.pth.tar` as the PyTorch ImageNet example saves it: a dict with
    `state_dict`, its keys holding the DataParallel fragment around `features` (`features.module.0.weight`)."""
    from brainrecon.models.vgg import build_vgg
    with torch.device("meta"):
        model = build_vgg(arch, 4 if modality == "rgbd" else 1)
    state = compact_state(model, seed, lambda k: k.replace("features.", "features.module.", 1))
    return {"epoch": 30, "arch": arch, "state_dict": state, "best_acc1": torch.tensor(0.0)}


def write_release_vggs(root: Path, seed: int = 0) -> list[Path]:
    """The five release VGG files at their data-folder paths (imagenet_rgbd/...)."""
    out = []
    for i, (arch, modality, large) in enumerate(RELEASE_VGGS):
        out.append(_save(layout.release_vgg_file(root, arch, modality, large),
                         release_vgg_checkpoint(arch, modality, seed + i)))
    return out


def write_midas(root: Path, seed: int = 0) -> list[Path]:
    """MiDaS v2.1 large and small as the intel-isl release files (a bare state dict, published key names)."""
    from brainrecon.models.midas import MidasNet
    out = []
    for i, size in enumerate(("large", "small")):
        with torch.device("meta"):
            model = MidasNet(size)
        state = {k: v for k, v in compact_state(model, seed + i).items() if not k.endswith("num_batches_tracked")}
        out.append(_save(layout.midas_file(root, size), state))
    return out


def torchvision_weights() -> dict[str, tuple]:
    """file name in torch hub's checkpoints folder -> (builder, weights enum) for every torchvision network brainrecon
    loads through the weights API."""
    from torchvision.models import AlexNet_Weights, VGG16_Weights, VGG19_Weights, alexnet, vgg16, vgg19
    nets = ((vgg16, VGG16_Weights.IMAGENET1K_V1), (vgg19, VGG19_Weights.IMAGENET1K_V1),
            (alexnet, AlexNet_Weights.IMAGENET1K_V1))
    return {Path(w.url).name: (build, w) for build, w in nets}


def write_torchvision(torch_home: Path, seed: int = 0) -> list[Path]:
    """torchvision's VGG16, VGG19 and AlexNet, random, where its weights API looks (TORCH_HOME/hub/checkpoints, the
    real file names). torch hub checks a file's hash only when it downloads it, so these load as if cached."""
    out = []
    for i, (name, (build, _)) in enumerate(torchvision_weights().items()):
        with torch.device("meta"):
            model = build(weights=None)
        out.append(_save(Path(torch_home) / "hub" / "checkpoints" / name, compact_state(model, seed + i)))
    return out
