"""The internal image convention, declared once: float32 (B, C, H, W) in [0, 1], channels R, G, B, D.

uint8 <-> float conversion happens only where files are read or written; normalisation for networks happens here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH_STD_FLOOR = 0.1
N_CHANNELS = {"rgb": 3, "depth": 1, "rgbd": 4}


def as_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (0..255) -> floats in [0, 1], the layout kept (the training tensors are (N, C, H, W) uint8); a float
    tensor is only cast. The one place uint8 becomes float."""
    return images.to(dtype) / 255.0 if images.dtype == torch.uint8 else images.to(dtype)


def to_float(images: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images as files hold them, (N, H, W, C) uint8 or [0, 1] floats -> (N, C, H, W) in [0, 1] (a view where the
    dtype allows: call .contiguous() where that matters)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    return as_float(x.permute(0, 3, 1, 2), dtype)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C)."""
    x = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def normalize_imagenet(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb - mean) / std


def normalize_depth_within_image(depth: torch.Tensor) -> torch.Tensor:
    """Per image: subtract its mean, divide by its std clamped below at 0.1 (the `norm_within_img` setting)."""
    mean = depth.mean(dim=(-2, -1), keepdim=True)
    std = depth.std(dim=(-2, -1), keepdim=True).clamp_min(DEPTH_STD_FLOOR)
    return (depth - mean) / std


def normalize_for_network(images: torch.Tensor, modality: str) -> torch.Tensor:
    """[0, 1] images of a modality -> the input a (VGG) network expects: ImageNet-normalised RGB, standardised depth."""
    if modality == "rgb":
        return normalize_imagenet(images)
    if modality == "depth":
        return normalize_depth_within_image(images)
    return torch.cat([normalize_imagenet(images[:, :3]), normalize_depth_within_image(images[:, 3:])], dim=1)


def random_shift(images: torch.Tensor, pad_percent: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop back to size after edge-padding by `pad_percent` of the side: one shift per image."""
    if pad_percent <= 0:
        return images
    b, _, h, w = images.shape
    pad = int(pad_percent / 100 * h)
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def resize(images: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode=mode, align_corners=False, antialias=mode != "nearest")
