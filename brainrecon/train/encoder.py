"""train-encoder: image -> voxels, supervised on the training pairs; selected on a held-out validation split.

The original kept the checkpoint with the best *test* loss, which leaks the test set into model selection; brainrecon
selects on `data.val_fraction` of the training pairs and only reports test numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from brainrecon import losses
from brainrecon.atomic import write_text_atomic
from brainrecon.config import EncoderConfig, to_dict
from brainrecon.data import layout
from brainrecon.correlation import pearson
from brainrecon.data.datasets import load_paired
from brainrecon.data.transforms import N_CHANNELS, as_float, random_shift
from brainrecon.errors import UserError
from brainrecon.locks import hold
from brainrecon.models.encoder import Encoder
from brainrecon.models.vgg import build_vgg, load_imagenet_vgg, load_release_vgg
from brainrecon.runtime import Runtime, autocast, setup
from brainrecon.train import checkpoint
from brainrecon.train.distributed import steps_per_epoch, wrap
from brainrecon.train.loop import RunFolder, Schedule, fit, run_epoch, selection
from brainrecon.train.monitor import Monitor

SIGNAL_CEILING = 0.5  # voxels whose estimated noise ceiling exceeds this count as "carrying signal" in the summaries


def voxel_correlation(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-voxel Pearson r over samples: (N, V), (N, V) -> (V,)."""
    return pearson(pred, target, dim=0)


def correlation_summary(r: torch.Tensor, ceiling: torch.Tensor) -> dict:
    r, nc = r.float().cpu().numpy(), ceiling.float().cpu().numpy()
    signal = nc > SIGNAL_CEILING
    ratio = r[signal] / nc[signal] if signal.any() else np.array([np.nan])
    return {"median_r": float(np.median(r)), "r_75": float(np.percentile(r, 75)), "r_90": float(np.percentile(r, 90)),
            "median_r_signal": float(np.median(r[signal])) if signal.any() else float("nan"),
            "median_r_over_ceiling": float(np.median(ratio)), "n_signal_voxels": int(signal.sum())}


def build_encoder(cfg: EncoderConfig, n_voxels: int, root: Path) -> Encoder:
    m = cfg.model
    arch = checkpoint.encoder_arch(cfg, n_voxels, m.train_backbone)
    if m.arch == "effnet-lite0":
        from brainrecon.models.effnet_taps import build_effnet
        return Encoder(arch, build_effnet(m.backbone_weights == "imagenet"))
    if m.backbone_weights == "release":
        if cfg.modality == "rgb":
            raise UserError("--backbone-weights release has no rgb VGG in the release; use imagenet (or none)")
        backbone = load_release_vgg(layout.release_vgg_file(root, m.arch, cfg.modality), m.arch,
                                    N_CHANNELS[cfg.modality])
    elif m.backbone_weights == "imagenet":
        backbone = load_imagenet_vgg(m.arch)
    else:
        backbone = build_vgg(m.arch, N_CHANNELS[cfg.modality], m.width)
    return Encoder(arch, backbone)


def backbone_note(cfg: EncoderConfig) -> str | None:
    """One line for an encoder on a backbone other than the paper's (announced at the start; config.yaml records it)."""
    m = cfg.model
    paper = "VGG19 with the release's weights" if cfg.modality != "rgb" else "VGG19 with torchvision's ImageNet weights"
    if m.arch == "effnet-lite0":
        weights = "the shipped ImageNet weights" if m.backbone_weights == "imagenet" else "randomly initialised"
        return f"encoder backbone: EfficientNet-Lite0, {weights}, a stand-in for the paper's {paper}"
    if m.backbone_weights == "none":
        return (f"encoder backbone: {m.arch} randomly initialised (backbone_weights none), a stand-in for the paper's "
                f"{paper}")
    return None


def encoder_loss(model: Encoder, pred, target, cfg: EncoderConfig) -> tuple[torch.Tensor, dict]:
    lc = cfg.loss
    crit = losses.voxel_loss(pred, target, lc.mse, lc.cosine)
    maps = model.regularised_maps()
    reg = {"group_lasso": lc.group_lasso * sum(losses.spatial_group_lasso(w) for w, _ in maps),
           "second_moment": lc.second_moment * sum(losses.second_moment(w) for w, _ in maps),
           "l1_convs": lc.l1_convs * losses.l1(h[-3].weight for h in model.heads.values()),  # head conv
           "l1_chan_mix": lc.l1_chan_mix * losses.l1(c.chan_mix for c in model.chan_mixes),
           "l1_branch_mix": lc.l1_branch_mix * model.branch_mix.abs().sum()}
    return crit + sum(reg.values()), {"criterion": crit.detach(), **{k: v.detach() for k, v in reg.items()}}


def step_loss(model, raw: Encoder, images_uint8: torch.Tensor, fmri: torch.Tensor, cfg: EncoderConfig,
              runtime: Runtime, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One training step's loss on a paired batch: a random shift of the images (drawn from `gen`), the forward of
    `model` (the wrapped `raw`) under the runtime's autocast, and `encoder_loss` in fp32."""
    images = random_shift(as_float(images_uint8), cfg.loss.pad_percent, gen)
    with autocast(runtime):
        pred = model(images).float()
    return encoder_loss(raw, pred, fmri, cfg)


@torch.no_grad()
def predict(model: Encoder, images_uint8: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Voxel predictions in fp32 (also when training runs under autocast: reported numbers are full precision)."""
    model.eval()
    return torch.cat([model(as_float(images_uint8[i:i + batch])).float() for i in range(0, len(images_uint8), batch)])


def train_encoder(cfg: EncoderConfig, data_root: Path, run_dir: Path, resume: bool = False,
                  quiet: bool = False, resume_hint: str = "--resume") -> dict:
    """Train, select on validation loss, write best.pt, metrics.json and the voxel-r figure; returns the metrics.
    `resume_hint` is how an interrupted run says to continue it (the caller knows its command line)."""
    runtime = setup(cfg.train.device, cfg.train.amp, cfg.train.seed, cfg.train.deterministic, cfg.train.threads)
    with hold(run_dir, runtime.is_main):
        return _train_encoder(cfg, runtime, Path(data_root), Path(run_dir), quiet, resume, resume_hint)


def _train_encoder(cfg: EncoderConfig, runtime: Runtime, data_root: Path, run_dir: Path, quiet: bool, resume: bool,
                   resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    data = load_paired(data_root, cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
    torch.manual_seed(t.seed)
    raw = build_encoder(cfg, data.n_voxels, data_root)
    model = wrap(raw, runtime, "encoder")
    optimizer = torch.optim.Adam(raw.trainable_parameters(), lr=t.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, t.milestones, t.gamma)
    monitor = Monitor(run_dir, enabled=runtime.is_main, quiet=quiet)
    if (note := backbone_note(cfg)) is not None:
        monitor.say(note)

    steps = steps_per_epoch(len(data.train_images), t.batch_size, runtime, cfg.data.val_fraction == 0)

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
               "selected_by": selection("val_loss" if has_val else None, cfg.data.val_fraction), **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        from brainrecon.viz import plot_voxel_correlation
        plot_voxel_correlation(r.cpu().numpy(), data.noise_ceiling.cpu().numpy(), run_dir / "voxel_r.png")
    return metrics
