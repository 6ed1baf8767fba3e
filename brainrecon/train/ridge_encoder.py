"""train-encoder --model ridge (not in the paper): the frozen backbone's pooled taps -> voxels, fitted in closed form
with a penalty per voxel: each voxel's is the one of the grid (`ridge_lambdas`) whose out-of-fold predictions, pooled
over `ridge_folds` cross-validation folds of the training pairs, have the smallest squared error (best R^2).

A few-pairs candidate (docs/results.md): with 75 pairs a closed-form read-out of fixed features has no epochs to
choose and cannot overfit its way past its penalty. Like ridge decoding, it fits the same training rows as a deep
encoder of the same config: the validation split (data.val_fraction, same seed) is held out and unused, and listed in
pairs.json, so the decoder's held-out switches (train/heldout.py) can read it.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from brainrecon.config import EncoderConfig, to_dict, to_yaml
from brainrecon.data.datasets import load_paired
from brainrecon.data.transforms import as_float
from brainrecon.models.ridge_encoder import RidgeEncoder
from brainrecon.runtime import Runtime
from brainrecon.train import checkpoint
from brainrecon.train.encoder_step import build_backbone, correlation_summary, predict, voxel_correlation
from brainrecon.train.loop import write_records
from brainrecon.train.ridge import eig_factors


@torch.no_grad()
def image_features(model: RidgeEncoder, images_uint8: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """(N, F) pooled tap features in double precision, before z-scoring."""
    return torch.cat([model.features(as_float(images_uint8[i:i + batch])).double()
                      for i in range(0, len(images_uint8), batch)])


def per_voxel_cv(z: torch.Tensor, y: torch.Tensor, lambdas: list[float], folds: int, seed: int) -> torch.Tensor:
    """(len(lambdas), V): for each penalty, each voxel's held-out R^2 (1 - the squared error of its out-of-fold
    predictions, pooled over the folds, over its sum of squares around its mean). The squared error, not the
    correlation, decides: a correlation ignores the predictions' scale, so a voxel without signal would take the
    smallest penalty and the wildest read-out as often as any other."""
    n = len(z)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(z.device)
    sse = torch.zeros(len(lambdas), y.shape[1], dtype=y.dtype, device=y.device)
    for k in range(folds):
        val = order[k::folds]
        keep = torch.ones(n, dtype=torch.bool, device=z.device)
        keep[val] = False
        zm, ym = z[keep].mean(0), y[keep].mean(0)
        left, e, right = eig_factors(z[keep] - zm, y[keep] - ym)
        proj = (z[val] - zm) @ left
        for i, lam in enumerate(lambdas):
            sse[i] += (((proj / (e + lam)) @ right + ym - y[val]) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0).clamp_min(1e-300)
    return 1 - sse / sst


def fit(features: torch.Tensor, fmri: torch.Tensor, lambdas: list[float], folds: int, seed: int) -> tuple[dict, dict]:
    """(RidgeEncoder's read-out buffers, a record of the penalties chosen) from (N, F) features and (N, V) fMRI."""
    x, y = features.double(), fmri.double()
    mean, std = x.mean(0), x.std(0)
    # a feature (nearly) constant over the training images gets no weight: z-scored, it would turn any change on
    # other images (the DE cycle's reconstructions) into a huge input
    dead = std <= 1e-3 * std.median().clamp_min(1e-12)
    std = torch.where(dead, torch.ones_like(std), std)
    z = ((x - mean) / std).masked_fill(dead, 0.0)
    lambdas = sorted(lambdas)
    scores = per_voxel_cv(z, y, lambdas, folds, seed)                             # (L, V)
    best = scores.argmax(0)
    lam = torch.tensor(lambdas, dtype=y.dtype, device=y.device)[best]           # (V,)
    ym = y.mean(0)
    left, e, right = eig_factors(z, y - ym)
    weight = (left @ (right / (e[:, None] + lam[None, :]))).masked_fill(dead[:, None], 0.0)   # (F, V)
    counts = np.bincount(best.cpu().numpy(), minlength=len(lambdas))
    at_edge = float((best == len(lambdas) - 1).float().mean())
    if counts[0] > len(best) / 4:   # voxels without signal take the largest: many at the smallest say the grid is short
        warnings.warn(f"ridge read-out: {counts[0]} of {len(best)} voxels chose the smallest penalty {lambdas[0]:g}; "
                      "extend ridge_lambdas downwards", stacklevel=2)
    record = {"cv_lambdas": lambdas, "voxels_per_lambda": [int(c) for c in counts],
              "median_lambda": float(lam.median()), "fraction_at_largest_lambda": round(at_edge, 4),
              "median_cv_r2": float(scores.max(0).values.median()), "constant_features_dropped": int(dead.sum())}
    return {"feature_mean": mean.float(), "feature_std": std.float(), "weight": weight.float(),
            "intercept": ym.float()}, record


def train_ridge_encoder(cfg: EncoderConfig, runtime: Runtime, data_root: Path, run_dir: Path,
                        resume: bool = False) -> dict:
    """Fit, write best.pt (the backbone and the read-out), metrics.json and pairs.json (the caller holds the lock). A
    folder that holds a fit already: `checkpoint.closed_form_done`."""
    start = time.perf_counter()
    t = cfg.train
    data = load_paired(Path(data_root), cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
    cv = f"penalties by {cfg.ridge_folds}-fold CV"
    data.subset.val_rule += (f"; held out and unused (ridge read-out: {cv} over the training rows)"
                             if data.subset.val_rows else f"; {cv}")
    done = checkpoint.closed_form_done(run_dir, to_dict(cfg), checkpoint.fingerprint(data.files), resume,
                                       runtime.distributed)
    if done is not None:
        return done
    model = RidgeEncoder(checkpoint.encoder_arch(cfg, data.n_voxels, train_backbone=False), cfg.model.ridge_pool,
                         build_backbone(cfg, data_root)).to(runtime.device).eval()
    readout, choice = fit(image_features(model, data.train_images), data.train_fmri, cfg.ridge_lambdas,
                          cfg.ridge_folds, t.seed)
    for name, value in readout.items():
        getattr(model, name).copy_(value)
    r = voxel_correlation(predict(model, data.test_images), data.test_fmri)
    metrics = {"model": "ridge", **correlation_summary(r, data.noise_ceiling), **choice,
               "n_features": model.n_features, "n_voxels": data.n_voxels, "epochs": 0, "best_epoch": 0,
               "selected_by": "closed form (no epochs); " + data.subset.val_rule, "modality": cfg.modality,
               "roi": cfg.data.roi, "pairs": data.subset.record(), "seconds": round(time.perf_counter() - start, 2),
               **runtime.record()}
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        from brainrecon.atomic import write_text_atomic
        write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
        checkpoint.save(run_dir / checkpoint.BEST, model=model.state_dict(), epoch=0, config=to_dict(cfg),
                        kind="encoder", model_kind="ridge", n_voxels=data.n_voxels,
                        data_dir=str(Path(data_root).resolve()), data_fingerprint=checkpoint.fingerprint(data.files))
        write_records(run_dir, metrics, {cfg.data.subject: data.subset})
        from brainrecon.viz import plot_voxel_correlation
        plot_voxel_correlation(r.cpu().numpy(), data.noise_ceiling.cpu().numpy(), run_dir / "voxel_r.png")
    return metrics
