"""train-encoder --subjects 1,2,4,5: one encoder for several subjects who saw the same images.

The image pathway (backbone and heads) is shared, the voxel readout is per subject (models/subjects.py). Each step
takes one batch per subject (the same shuffled rows of each subject's own training pairs) and minimises the mean over
subjects of the single-subject loss (train/encoder.py `step_loss`, regularisers included): with one subject it is that
step, and a shared weight's regulariser, the same in every subject's term, counts once.
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
from brainrecon.data.datasets import PairedData, load_group
from brainrecon.models.subjects import SubjectEncoders
from brainrecon.runtime import Runtime
from brainrecon.train import checkpoint
from brainrecon.train.adapt import stimulus_record
from brainrecon.train.distributed import steps_per_epoch
from brainrecon.train.encoder_step import (build_backbone, correlation_summary, predict, start_training, step_loss,
                                      voxel_correlation)
from brainrecon.train.loop import RunFolder, Schedule, fit, run_epoch, selection


def group_files(datas: dict[int, PairedData]) -> list[Path]:
    """Every data file the group's subjects read (the stimulus file once)."""
    return list(dict.fromkeys(f for d in datas.values() for f in d.files))


def group_rows(idx: torch.Tensor, data: PairedData) -> torch.Tensor:
    """A batch's rows in one subject's training pairs: the shuffled indices over the largest subject's pairs, wrapped
    onto this subject's count (with the same stimulus set and data.pairs every subject has the same count)."""
    return idx % len(data.train_images)


def train_group_encoder(cfg: EncoderConfig, runtime: Runtime, data_root: Path, run_dir: Path, quiet: bool,
                        resume: bool, resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    datas = load_group(data_root, cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
    torch.manual_seed(t.seed)
    archs = {s: checkpoint.encoder_arch(cfg, d.n_voxels, cfg.model.train_backbone) for s, d in datas.items()}
    raw = SubjectEncoders(archs, build_backbone(cfg, data_root))
    model, optimizer, scheduler, monitor = start_training(raw, cfg, runtime, run_dir, quiet)
    n_rows = max(len(d.train_images) for d in datas.values())
    has_val = all(len(d.val_images) > 0 for d in datas.values())
    steps = steps_per_epoch(n_rows, t.batch_size, runtime, not has_val, t.steps_per_epoch)

    def batch_loss(idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        total, logged = 0, {}
        for s, d in datas.items():
            rows = group_rows(idx, d)
            loss, parts = step_loss(lambda x, s=s: model(x, s), raw.members[str(s)], d.train_images[rows],
                                    d.train_fmri[rows], cfg, runtime, gen)
            total = total + loss / len(datas)
            logged[f"loss_subject{s}"] = loss.detach()
        return total, {"loss": total, **logged}

    def train_epoch(epoch: int) -> dict:
        return run_epoch(epoch, steps, n_rows, t.batch_size, t.seed, runtime, optimizer, monitor, batch_loss)

    def validate(epoch: int) -> dict:
        if not has_val:
            return {}
        out = {"val_loss": 0.0, "val_median_r": 0.0}
        for s, d in datas.items():
            val = predict(raw.members[str(s)], d.val_images)
            out["val_loss"] += float(losses.voxel_loss(val, d.val_fmri, cfg.loss.mse, cfg.loss.cosine)) / len(datas)
            out["val_median_r"] += float(voxel_correlation(val, d.val_fmri).median()) / len(datas)
        return out

    def line(r: dict) -> str:
        val = f"val loss {r['val_loss']:.4f}  val r median {r['val_median_r']:.3f}  " if has_val else ""
        return (f"encoder ({len(datas)} subjects) epoch {r['epoch'] + 1}/{t.epochs}  train {r['train_loss']:.4f}  "
                f"{val}{r['seconds']:.0f}s")

    subjects = {str(s): d.n_voxels for s, d in datas.items()}
    extra = {"n_voxels": 0, "subjects": subjects, "kind": "encoder", "data_dir": str(data_root.resolve()),
             "stimulus_file": stimulus_record(next(iter(datas.values())).files[0])}
    run = RunFolder(run_dir, to_dict(cfg), checkpoint.fingerprint(group_files(datas)), resume, resume_hint, extra)
    schedule = Schedule(t.epochs, t.seed, "val_loss" if has_val else None, steps, "train-encoder")
    history = fit(run, schedule, runtime=runtime, model=model, optimizer=optimizer, scheduler=scheduler,
                  train_epoch=train_epoch, validate=validate, monitor=monitor, line=line)
    monitor.close()
    best = checkpoint.load_group_encoder(run_dir, runtime.device)
    per_subject, figures = {}, {}
    for s, d in datas.items():
        r = voxel_correlation(predict(best.members[str(s)], d.test_images), d.test_fmri)
        per_subject[str(s)] = {**correlation_summary(r, d.noise_ceiling), "n_voxels": d.n_voxels,
                               "pairs": d.subset.record()}
        figures[s] = (r.cpu().numpy(), d.noise_ceiling.cpu().numpy())
    first = next(iter(datas.values()))
    mean = {k: float(np.mean([p[k] for p in per_subject.values()])) for k in ("median_r", "median_r_over_ceiling")}
    metrics = {**mean, "summary": "median_r and median_r_over_ceiling: the mean over subjects of each one's median",
               "subjects": per_subject, "epochs": len(history),
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "seconds": round(time.perf_counter() - start, 2), "modality": cfg.modality, "roi": cfg.data.roi,
               "selected_by": selection("val_loss" if has_val else None, f"per subject, {first.subset.val_rule}; "
                                        "their mean"), **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        from brainrecon.viz import plot_voxel_correlation
        for s, (r, ceiling) in figures.items():
            plot_voxel_correlation(r, ceiling, run_dir / f"voxel_r_subject{s}.png")
    return metrics
