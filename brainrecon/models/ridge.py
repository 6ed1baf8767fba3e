"""The linear baseline decoder: z-scored voxels -> pixels, stored factorised as z @ left @ right.

With n training samples and V voxels the fitted map has rank min(n, V); it is kept as left (V, k) and right (k, P),
k = min(n, V), which is far smaller than the dense V x P map at 112 px.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from brainrecon.data.transforms import N_CHANNELS


class RidgeDecoder(nn.Module):
    def __init__(self, voxel_mean, voxel_std, left, right, intercept, modality: str, resolution: int):
        super().__init__()
        self.modality, self.resolution = modality, resolution
        for name, value in (("voxel_mean", voxel_mean), ("voxel_std", voxel_std), ("left", left), ("right", right),
                            ("intercept", intercept)):
            self.register_buffer(name, value.float())

    @classmethod
    def from_state(cls, state: dict, modality: str, resolution: int) -> "RidgeDecoder":
        return cls(state["voxel_mean"], state["voxel_std"], state["left"], state["right"], state["intercept"],
                   modality, resolution)

    @property
    def n_voxels(self) -> int:
        return self.voxel_mean.numel()

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        z = (voxels - self.voxel_mean) / self.voxel_std
        pixels = (z @ self.left) @ self.right + self.intercept                      # (B, V) -> (B, C*R*R)
        c, r = N_CHANNELS[self.modality], self.resolution
        return pixels.view(-1, c, r, r).clamp(0, 1)
