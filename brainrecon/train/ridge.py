"""train-decoder --model ridge: closed-form ridge from z-scored voxels to pixels, lambda chosen by K-fold CV.

Each fold diagonalises the smaller Gram matrix (samples x samples when n <= V, the dual form; voxels x voxels
otherwise), so every lambda of the grid costs one matrix product.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from brainrecon.atomic import write_text_atomic
from brainrecon.config import DecoderConfig, to_dict, to_yaml
from brainrecon.correlation import pearson
from brainrecon.data.datasets import load_paired
from brainrecon.data.pair_subset import write_listing
from brainrecon.data.transforms import as_float
from brainrecon.runtime import Runtime
from brainrecon.train import checkpoint


def eig_factors(x: torch.Tensor, y: torch.Tensor):
    """For centred x (n, V), y (n, P): (L, e, R) with ridge prediction for new z = z @ L @ diag(1/(e+lam)) @ R."""
    n, v = x.shape
    if n <= v:
        e, u = torch.linalg.eigh(x @ x.T)                                            # dual: (n, n)
        return x.T @ u, e.clamp_min(0), u.T @ y
    e, q = torch.linalg.eigh(x.T @ x)                                                # primal: (V, V)
    return q, e.clamp_min(0), q.T @ (x.T @ y)


def cross_validate(x: torch.Tensor, y: torch.Tensor, lambdas: list[float], folds: int, seed: int) -> np.ndarray:
    """Mean held-out pixel correlation for each lambda (x z-scored voxels, y pixels; both (n, .))."""
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    scores = np.zeros(len(lambdas))
    for k in range(folds):
        val = order[k::folds]
        keep = torch.ones(n, dtype=torch.bool)
        keep[val] = False
        xm, ym = x[keep].mean(0), y[keep].mean(0)
        left, e, right = eig_factors(x[keep] - xm, y[keep] - ym)
        proj = (x[val.to(x.device)] - xm) @ left
        for i, lam in enumerate(lambdas):
            pred = (proj / (e + lam)) @ right + ym
            scores[i] += float(pearson(pred, y[val.to(y.device)]).mean()) / folds
    return scores


def fit_ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> dict:
    """Final fit on all pairs: buffers for RidgeDecoder (z-scoring stats, factors, intercept)."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    ym = y.mean(0)
    left, e, right = eig_factors(z, y - ym)
    return {"voxel_mean": mean.float(), "voxel_std": std.float(), "left": left.float(),
            "right": (right / (e + lam).unsqueeze(1)).float(), "intercept": ym.float()}


def fit_cv(cfg: DecoderConfig, fmri: torch.Tensor, images: torch.Tensor) -> tuple[dict, dict]:
    """Ridge from `fmri` (n, V) to `images` (n, C, R, R uint8) with lambda by cfg.ridge_folds-fold CV over
    cfg.ridge_lambdas: (RidgeDecoder buffers, a record of the choice)."""
    x = fmri.double()
    y = as_float(images).flatten(1).double()
    z = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    lambdas = sorted(cfg.ridge_lambdas)
    scores = cross_validate(z, y, lambdas, cfg.ridge_folds, cfg.train.seed)
    best = int(np.argmax(scores))
    chosen = lambdas[best]
    edge = best in (0, len(lambdas) - 1)
    if edge:
        warnings.warn(f"ridge CV chose lambda={chosen:g} at the end of the grid {lambdas[0]:g}..{lambdas[-1]:g}; "
                      "widen ridge_lambdas", stacklevel=2)
    record = {"lambda": chosen, "lambda_at_grid_edge": edge, "cv_lambdas": lambdas,
              "cv_pixcorr": [round(float(s), 5) for s in scores]}
    return fit_ridge(x, y, chosen), record


def train_ridge(cfg: DecoderConfig, runtime: Runtime, data_root: Path, run_dir: Path,
                quiet: bool = False, resume: bool = False) -> dict:
    """Cross-validate lambda, fit, write best.pt and metrics.json (the caller holds the lock). Ridge fits the same
    training rows as a deep decoder of the same config: the validation split (data.val_fraction, drawn by the same
    seed) is held out and unused, so ridge and the deep decoders it is compared with see the same pairs. A folder
    that holds a fit already: `checkpoint.closed_form_done`."""
    start = time.perf_counter()
    data = load_paired(Path(data_root), cfg.data, cfg.modality, seed=cfg.train.seed, device=runtime.device)
    data.subset.val_rule += (f"; held out and unused (ridge: lambda by {cfg.ridge_folds}-fold CV over the training "
                             "rows)") if data.subset.val_rows else f"; lambda by {cfg.ridge_folds}-fold CV"
    done = checkpoint.closed_form_done(run_dir, to_dict(cfg), checkpoint.fingerprint(data.files), resume,
                                       runtime.distributed)
    if done is not None:
        return done
    state, choice = fit_cv(cfg, data.train_fmri, data.train_images)
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
        checkpoint.save(run_dir / checkpoint.BEST, model=state, epoch=0, config=to_dict(cfg), kind="decoder",
                        model_kind="ridge", n_voxels=data.n_voxels, encoder_run="",
                        data_dir=str(Path(data_root).resolve()),
                        data_fingerprint=checkpoint.fingerprint(data.files))
    from brainrecon.models.ridge import RidgeDecoder
    model = RidgeDecoder.from_state(state, cfg.modality, cfg.data.resolution)
    with torch.no_grad():
        test_pixcorr = float(pearson(model(data.test_fmri).flatten(1), as_float(data.test_images).flatten(1)).mean())
    metrics = {"model": "ridge", **choice,
               "test_pixcorr": test_pixcorr, "modality": cfg.modality, "subject": cfg.data.subject,
               "roi": cfg.data.roi, "n_voxels": data.n_voxels, "seconds": round(time.perf_counter() - start, 2),
               "self_supervision": False,
               "pairs": data.subset.record(), **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        write_listing(run_dir, data.subset)
        from brainrecon.viz import plot_cv_curve
        plot_cv_curve(choice["cv_lambdas"], choice["cv_pixcorr"], choice["lambda"], run_dir / "ridge_cv.png")
        if not quiet:
            from brainrecon.train.monitor import console
            console.print(f"ridge: lambda {choice['lambda']:g} (CV pixcorr {max(choice['cv_pixcorr']):.3f}), test "
                          f"pixcorr {test_pixcorr:.3f}")
    return metrics
