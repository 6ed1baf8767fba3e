"""Pearson r, written once: paired along an axis (per image, per voxel) or every row against every row.

Takes torch tensors or numpy arrays and answers in kind (numpy arrays are computed through torch, in their own
dtype). The training metrics (decoder and ridge pixcorr, encoder voxel r), the n-way identification's pixcorr, the
classification's prototype distances and the NSD suite all call these two functions.
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-12
"""Floor of the norm products: a constant row has r = 0, never a division by zero."""


def pearson(a, b, dim: int = 1, cross: bool = False):
    """Pearson r between `a` and `b`.

    Paired (default): a, b of one shape -> r of each slice along `dim` with its partner, the other axes kept
    ((N, D), (N, D) -> (N,) with dim=1; per voxel over samples with dim=0).
    cross=True: rows against rows, (N, D), (M, D) -> (N, M).
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
        return pearson(a, b, dim, cross).numpy()
    a, b = a - a.mean(dim, keepdim=True), b - b.mean(dim, keepdim=True)
    if not cross:
        return (a * b).sum(dim) / torch.sqrt((a * a).sum(dim) * (b * b).sum(dim)).clamp_min(EPS)
    if a.dim() != 2 or b.dim() != 2 or dim not in (1, -1):
        raise ValueError(f"cross Pearson r takes (N, D) and (M, D) rows, not {tuple(a.shape)} and {tuple(b.shape)}")
    a = a / a.norm(dim=1, keepdim=True).clamp_min(EPS)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(EPS)
    return a @ b.T


def correlation_distance(a, b, dim: int = 1, cross: bool = False):
    """1 - Pearson r (as `pearson`): 0 for perfectly correlated, 1 for uncorrelated, 2 for anti-correlated."""
    return 1 - pearson(a, b, dim, cross)
