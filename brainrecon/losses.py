"""Loss terms and regularisers (METHOD §3-4), as plain functions over tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over samples of (1 - cos(pred, target)) / 2 on flattened vectors."""
    return ((1 - F.cosine_similarity(pred.flatten(1), target.flatten(1), dim=1)) / 2).mean()


def voxel_loss(pred, target, mse_w: float = 1.0, cos_w: float = 0.3) -> torch.Tensor:
    """Encoder criterion: MSE + w * cosine loss."""
    return mse_w * F.mse_loss(pred, target) + cos_w * cosine_loss(pred, target)


def fmri_loss(pred, target, snr_weight: torch.Tensor, cos_w: float = 0.2) -> torch.Tensor:
    """Decoder->encoder cycle: SNR-weighted L1 (SNR / its mean) + w * cosine loss."""
    return (snr_weight * (pred - target).abs()).mean() + cos_w * cosine_loss(pred, target)


# --- encoder readout regularisers --------------------------------------------------------------------------------

def spatial_group_lasso(w: torch.Tensor) -> torch.Tensor:
    """w (V, d, d): 5e-6 * sum|w| + 1e-5 * sum sqrt(mean of w^2 over the 4 neighbours, reflect-padded)."""
    sq = F.pad((w ** 2).unsqueeze(1), (1, 1, 1, 1), mode="reflect").squeeze(1)
    neigh = (sq[:, :-2, 1:-1] + sq[:, 2:, 1:-1] + sq[:, 1:-1, :-2] + sq[:, 1:-1, 2:]) / 4
    return 5e-6 * w.abs().sum() + 1e-5 * torch.sqrt(neigh + 1e-12).sum()


def second_moment(w: torch.Tensor) -> torch.Tensor:
    """w (V, d, d): per voxel, spatial variance of w^2 around its own centre of mass; summed / (2 * d * V)."""
    v, d, _ = w.shape
    m = w ** 2
    grid = torch.arange(d, device=w.device, dtype=w.dtype)
    mass = m.sum(dim=(1, 2)).clamp_min(1e-12)
    cx = (m.sum(2) * grid).sum(1) / mass
    cy = (m.sum(1) * grid).sum(1) / mass
    spread = (m * (grid.view(1, d, 1) - cx.view(v, 1, 1)) ** 2).sum((1, 2)) + \
             (m * (grid.view(1, 1, d) - cy.view(v, 1, 1)) ** 2).sum((1, 2))
    return spread.sum() / (2 * d * v)


def l1(params) -> torch.Tensor:
    return sum(p.abs().sum() for p in params)


# --- decoder --------------------------------------------------------------------------------------------------------

def decoder_group_lasso(w: torch.Tensor, snr_inv: torch.Tensor, l1_w: float, gl_w: float) -> torch.Tensor:
    """w (V, C, S, S): l1_w * mean(|w| * 1/SNR scaled to mean 1) + gl_w * mean over (V, S, S) of
    sqrt(mean over C of (w^2 mixed with its 8 neighbours: self 1, each neighbour 0.5/8, / 1.5))."""
    v, c, s, _ = w.shape
    sparse = (w.abs() * snr_inv.view(v, 1, 1, 1)).mean()
    sq = F.pad(w ** 2, (1, 1, 1, 1), mode="reflect")
    neigh = sum(sq[:, :, 1 + dy:1 + dy + s, 1 + dx:1 + dx + s]
                for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
    mixed = (w ** 2 + 0.5 / 8 * neigh) / 1.5
    group = torch.sqrt(mixed.mean(1) + 1e-12).mean()
    return l1_w * sparse + gl_w * group


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """mean((dx^2 + dy^2)^1.25), differences taken against the lower-right neighbour as in the original."""
    dy = x[..., 1:, :-1] - x[..., 1:, 1:]
    dx = x[..., :-1, 1:] - x[..., 1:, 1:]
    return ((dx ** 2 + dy ** 2 + 1e-12) ** 1.25).mean()


def unit_channels(f: torch.Tensor) -> torch.Tensor:
    """Unit-normalise over channels, in fp32: under bf16 autocast the features arrive in bf16, and the channel sums are
    taken at full precision. (This alone did not cure the decoder's gradient drift under bf16, cosine to fp32 0.984
    with or without it; keeping the decoder in fp32 did, see train/decoder.py.)"""
    f = f.float()
    return f / (torch.sqrt((f ** 2).sum(1, keepdim=True) + 1e-10) + 1e-10)


class ImageLoss(torch.nn.Module):
    """Perceptual (post-pool VGG16 taps) + channel-norm-scaled RGB and depth L1 + total variation."""

    def __init__(self, modality: str, channel_norms: torch.Tensor, perceptual_net=None,
                 perceptual_weights=(10, 10, 10, 10, 2), rgb_l1=1.0, depth_l1=1.0, tv=0.3):
        super().__init__()
        self.modality, self.net = modality, perceptual_net
        self.register_buffer("norms", channel_norms.view(1, -1, 1, 1).clamp_min(1e-6))
        self.pw, self.rgb_l1, self.depth_l1, self.tv = list(perceptual_weights), rgb_l1, depth_l1, tv

    @torch.no_grad()
    def target_features(self, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unit-normalised perceptual features of fixed targets: what `forward` compares the prediction's with
        (a decoder run caches them, train/frozen_cache.py)."""
        return {name: unit_channels(f) for name, f in self.net(target).items()} if self.net is not None else {}

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                target_features: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        terms = {}
        p, t = pred / self.norms, target / self.norms
        if self.modality in ("rgb", "rgbd"):
            terms["rgb_l1"] = self.rgb_l1 * F.l1_loss(p[:, :3], t[:, :3])
        if self.modality in ("depth", "rgbd"):
            terms["depth_l1"] = self.depth_l1 * F.l1_loss(p[:, -1:], t[:, -1:])
        if self.net is not None:
            ft = target_features if target_features is not None else self.target_features(target)
            fp = self.net(pred)
            if len(fp) != len(self.pw):
                from brainrecon.errors import ConfigError
                raise ConfigError(f"loss.perceptual_weights has {len(self.pw)} values but {self.net.name} has "
                                  f"{len(fp)} feature layers; give one weight per layer")
            for k, name in enumerate(fp):
                d = 1 - (unit_channels(fp[name]) * ft[name]).sum(1)
                terms[f"percep_{name}"] = self.pw[k] * d.mean()
        terms["tv"] = self.tv * total_variation(pred)
        return terms
