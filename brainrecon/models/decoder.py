"""Voxels -> image decoder (METHOD §4): linear seed -> three [x2 bicubic, reflect-pad 5x5 conv, GroupNorm, swish]
blocks -> reflect-pad 5x5 conv -> sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from brainrecon.data.transforms import N_CHANNELS


@dataclass
class DecoderArch:
    n_voxels: int
    modality: str = "rgbd"
    channels: int = 64
    start_size: int = 14

    @property
    def out_size(self) -> int:
        return self.start_size * 8


def _block(ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False), nn.ReflectionPad2d(2),
                         nn.Conv2d(ch, ch, 5), nn.GroupNorm(32, ch), nn.SiLU())


class Decoder(nn.Module):
    def __init__(self, a: DecoderArch):
        super().__init__()
        self.arch = a
        self.input_fc = nn.Linear(a.n_voxels, a.channels * a.start_size ** 2)
        self.blocks = nn.Sequential(*[_block(a.channels) for _ in range(3)])
        self.top = nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(a.channels, N_CHANNELS[a.modality], 5), nn.Sigmoid())

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        a = self.arch
        x = self.input_fc(voxels).view(-1, a.channels, a.start_size, a.start_size)  # (B, V) -> (B, 64, 14, 14)
        x = self.blocks(x)                                                          # -> (B, 64, 112, 112)
        return self.top(x)                                                          # -> (B, C, 112, 112) in [0, 1]

    @property
    def n_voxels(self) -> int:
        return self.arch.n_voxels

    def input_map(self) -> torch.Tensor:
        """The input linear map viewed per voxel: (V, C, S, S)."""
        a = self.arch
        return self.input_fc.weight.T.reshape(a.n_voxels, a.channels, a.start_size, a.start_size)
