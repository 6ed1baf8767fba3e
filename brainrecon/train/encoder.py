"""train-encoder: image -> voxels, supervised on the training pairs; selected on a held-out validation split.

The original kept the checkpoint with the best *test* loss, which leaks the test set into model selection; brainrecon
selects on `data.val_fraction` of the training pairs and only reports test numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from brainrecon import losses
from brainrecon.atomic import write_text_atomic
from brainrecon.config import EncoderConfig, to_dict
from brainrecon.data.datasets import load_paired
from brainrecon.data.pair_subset import write_listing
from brainrecon.locks import hold
from brainrecon.runtime import Runtime, setup
from brainrecon.train import checkpoint
from brainrecon.train.encoder_step import (  # noqa: F401 (the step's names, importable from here as before)
    SIGNAL_CEILING, backbone_note, build_backbone, start_training, build_encoder, correlation_summary, encoder_loss, predict, step_loss,
    voxel_correlation)
from brainrecon.train.distributed import steps_per_epoch
from brainrecon.train.loop import RunFolder, Schedule, fit, run_epoch, selection

def train_encoder(cfg: EncoderConfig, data_root: Path, run_dir: Path, resume: bool = False,
                  quiet: bool = False, resume_hint: str = "--resume") -> dict:
    """Train, select on validation loss, write best.pt, metrics.json and the voxel-r figure; returns the metrics.
    `resume_hint` is how an interrupted run says to continue it (the caller knows its command line)."""
    runtime = setup(cfg.train.device, cfg.train.amp, cfg.train.seed, cfg.train.deterministic, cfg.train.threads)
    with hold(run_dir, runtime.is_main):
        if cfg.data.subjects:
            from brainrecon.train.group_encoder import train_group_encoder
            return train_group_encoder(cfg, runtime, Path(data_root), Path(run_dir), quiet, resume, resume_hint)
        return _train_encoder(cfg, runtime, Path(data_root), Path(run_dir), quiet, resume, resume_hint)


def _train_encoder(cfg: EncoderConfig, runtime: Runtime, data_root: Path, run_dir: Path, quiet: bool, resume: bool,
                   resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    data = load_paired(data_root, cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
    torch.manual_seed(t.seed)
    raw = build_encoder(cfg, data.n_voxels, data_root)
    adapted = None
    if t.init_from:
        from brainrecon.train.adapt import adapt_encoder
        adapted = adapt_encoder(raw, Path(t.init_from), cfg, data)
    model, optimizer, scheduler, monitor = start_training(raw, cfg, runtime, run_dir, quiet)

    steps = steps_per_epoch(len(data.train_images), t.batch_size, runtime, len(data.val_images) == 0,
                            t.steps_per_epoch)

    def batch_loss(idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        loss, parts = step_loss(model, raw, data.train_images[idx], data.train_fmri[idx], cfg, runtime, gen)
        return loss, {"loss": loss, **parts}

    def train_epoch(epoch: int) -> dict:
        return run_epoch(epoch, steps, len(data.train_images), t.batch_size, t.seed, runtime, optimizer, monitor,
                         batch_loss)

    has_val = len(data.val_images) > 0

    def validate(epoch: int) -> dict:
        """The validation split only: the test set is scored once, after training (metrics.json)."""
        if not has_val:
            return {}
        val = predict(raw, data.val_images)
        return {"val_loss": float(losses.voxel_loss(val, data.val_fmri, cfg.loss.mse, cfg.loss.cosine)),
                "val_median_r": float(voxel_correlation(val, data.val_fmri).median())}

    def line(r: dict) -> str:
        val = f"val loss {r['val_loss']:.4f}  val r median {r['val_median_r']:.3f}  " if has_val else ""
        return f"encoder epoch {r['epoch'] + 1}/{t.epochs}  train {r['train_loss']:.4f}  {val}{r['seconds']:.0f}s"

    extra = {"n_voxels": data.n_voxels, "kind": "encoder", "data_dir": str(data_root.resolve())}
    run = RunFolder(run_dir, to_dict(cfg), checkpoint.fingerprint(data.files), resume, resume_hint, extra)
    schedule = Schedule(t.epochs, t.seed, "val_loss" if has_val else None, steps, "train-encoder")
    history = fit(run, schedule, runtime=runtime, model=model, optimizer=optimizer, scheduler=scheduler,
                  train_epoch=train_epoch, validate=validate, monitor=monitor, line=line)
    monitor.close()
    best = checkpoint.load_encoder(run_dir, runtime.device)
    test = predict(best, data.test_images)
    r = voxel_correlation(test, data.test_fmri)
    metrics = {**correlation_summary(r, data.noise_ceiling), "epochs": len(history),
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "seconds": round(time.perf_counter() - start, 2), "modality": cfg.modality,
               "subject": cfg.data.subject, "roi": cfg.data.roi, "n_voxels": data.n_voxels,
               "selected_by": selection("val_loss" if has_val else None, data.subset.val_rule),
               "pairs": data.subset.record(), **({"init_from": adapted} if adapted else {}), **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        write_listing(run_dir, data.subset)
        from brainrecon.viz import plot_voxel_correlation
        plot_voxel_correlation(r.cpu().numpy(), data.noise_ceiling.cpu().numpy(), run_dir / "voxel_r.png")
    return metrics
