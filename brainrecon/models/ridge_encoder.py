"""The ridge read-out encoder (model.kind=ridge, not in the paper): image -> the frozen backbone's taps, each
average-pooled to pool x pool and z-scored -> one linear map to the voxels, fitted in closed form with a penalty per
voxel (train/ridge_encoder.py). Differentiable in the image, so the decoder's DE cycle runs through it as through the
paper's encoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainrecon.models import (
    backbones,  # noqa: F401 - registers the backbones that registry.backbone looks up
    registry,
)
from brainrecon.models.encoder import EncoderArch


class RidgeEncoder(nn.Module):
    """`backbone`: the network with its weights (registry.build_backbone); None: random weights (a checkpoint's
    state then fills them). The read-out lives in buffers: feature_mean, feature_std (F,), weight (F, V) and
    intercept (V,)."""

    def __init__(self, a: EncoderArch, pool: int, backbone: nn.Module | None = None):
        super().__init__()
        self.arch, self.pool = a, pool
        kind = registry.backbone(a.arch)
        net = backbone if backbone is not None else kind.build("none", a.modality, a.width, None)
        self.backbone = kind.taps(net, a.modality, "grey")
        self.backbone.requires_grad_(False)
        n = self.n_features
        for name, shape in (("feature_mean", (n,)), ("feature_std", (n,)), ("weight", (n, a.n_voxels)),
                            ("intercept", (a.n_voxels,))):
            self.register_buffer(name, torch.zeros(shape) if name != "feature_std" else torch.ones(shape))

    @property
    def n_features(self) -> int:
        return sum(self.backbone.channels().values()) * self.pool ** 2

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> (B, F) pooled tap features (before z-scoring); gradients flow only when the images carry
        them (the DE cycle)."""
        x = registry.backbone(self.arch.arch).prepare(images, self.arch.modality, self.arch.input_size)
        with torch.set_grad_enabled(torch.is_grad_enabled() and images.requires_grad):
            taps = self.backbone(x)
            return torch.cat([F.adaptive_avg_pool2d(taps[k], self.pool).flatten(1)
                              for k in self.backbone.channels()], 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """In fp32 also under autocast: the read-out was fitted in full precision, and z-scoring would magnify a
        bf16 feature's rounding by its mean over its SD."""
        with torch.autocast(images.device.type, enabled=False):
            z = (self.features(images.float()) - self.feature_mean) / self.feature_std
            return z @ self.weight + self.intercept

    def trainable_parameters(self):
        return []
