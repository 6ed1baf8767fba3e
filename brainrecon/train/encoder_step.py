"""The encoder's training step and what its trainers share: the backbone with its weights, the loss of one step
(random shift, forward under autocast, voxel loss and regularisers), predictions and the correlation summaries.
train/encoder.py trains one subject or several with these (each subject's step, their mean).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brainrecon import losses
from brainrecon.config import EncoderConfig
from brainrecon.config.networks import backbone_spec
from brainrecon.correlation import pearson
from brainrecon.data.transforms import as_float, random_shift
from brainrecon.models import registry
from brainrecon.models.encoder import Encoder
from brainrecon.runtime import Runtime, autocast
from brainrecon.train import checkpoint
from brainrecon.train.distributed import wrap
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


def build_backbone(cfg: EncoderConfig, root: Path) -> torch.nn.Module:
    """The encoder's backbone network with the configured weights (release, imagenet or none)."""
    m = cfg.model
    return registry.build_backbone(m.arch, m.backbone_weights, cfg.modality, m.width, root)


def build_encoder(cfg: EncoderConfig, n_voxels: int, root: Path) -> Encoder:
    return Encoder(checkpoint.encoder_arch(cfg, n_voxels, cfg.model.train_backbone), build_backbone(cfg, root))


def backbone_note(cfg: EncoderConfig) -> str | None:
    """One line for an encoder on a backbone other than the paper's (announced at the start; config.yaml records it)."""
    m, spec = cfg.model, backbone_spec(cfg.model.arch)
    if not spec.stand_in and m.backbone_weights != "none":
        return None
    paper = "VGG19 with the release's weights" if cfg.modality != "rgb" else "VGG19 with torchvision's ImageNet weights"
    return (f"encoder backbone: {spec.title}, {spec.weights[m.backbone_weights]} (backbone_weights "
            f"{m.backbone_weights}), a stand-in for the paper's {paper}")


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


def start_training(raw, cfg: EncoderConfig, runtime: Runtime, run_dir: Path, quiet: bool):
    """(the network placed and wrapped for the runtime, Adam, its MultiStepLR, the run's Monitor), the backbone
    announced when it is not the paper's: how both encoder trainers start."""
    t = cfg.train
    model = wrap(raw, runtime, "encoder")
    optimizer = torch.optim.Adam(raw.trainable_parameters(), lr=t.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, t.milestones, t.gamma)
    monitor = Monitor(run_dir, enabled=runtime.is_main, quiet=quiet)
    if (note := backbone_note(cfg)) is not None:
        monitor.say(note)
    return model, optimizer, scheduler, monitor
