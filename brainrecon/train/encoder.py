"""train-encoder: image -> voxels, supervised on the training pairs; selected on a held-out validation split.

One trainer for one subject or several (`data.subjects`): a single-subject run is a group of one. With several, the
image pathway (backbone and heads) is shared and the voxel readout is per subject (models/subjects.py); each step takes
one batch per subject from that subject's own pairs and minimises the mean over subjects of the single-subject loss
(train/encoder_step.py `step_loss`): with one subject it is that step, bit for bit.

The original kept the checkpoint with the best *test* loss, which leaks the test set into model selection; brainrecon
selects on `data.val_fraction` of the training pairs and only reports test numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from brainrecon import losses
from brainrecon.config import EncoderConfig, to_dict
from brainrecon.data.group import load_members
from brainrecon.locks import hold
from brainrecon.models.subjects import encoder_members, member_call
from brainrecon.runtime import Runtime, setup
from brainrecon.train import checkpoint
from brainrecon.train.distributed import steps_per_epoch
from brainrecon.train.encoder_step import (  # noqa: F401 (the step's names, importable from here as before)
    SIGNAL_CEILING,
    backbone_note,
    build_backbone,
    build_encoder,
    correlation_summary,
    encoder_loss,
    predict,
    start_training,
    step_loss,
    voxel_correlation,
)
from brainrecon.train.loop import (
    RunFolder,
    Schedule,
    fit,
    mean_over_subjects,
    run_epoch,
    selection,
    subject_metrics,
    write_records,
)


def train_encoder(cfg: EncoderConfig, data_root: Path, run_dir: Path, resume: bool = False,
                  quiet: bool = False, resume_hint: str = "--resume") -> dict:
    """Train, select on validation loss, write best.pt, metrics.json and the voxel-r figure; returns the metrics.
    `resume_hint` is how an interrupted run says to continue it (the caller knows its command line)."""
    runtime = setup(cfg.train.device, cfg.train.amp, cfg.train.seed, cfg.train.deterministic, cfg.train.threads)
    with hold(run_dir, runtime.is_main):
        if cfg.model.kind == "ridge":
            from brainrecon.train.ridge_encoder import train_ridge_encoder
            return train_ridge_encoder(cfg, runtime, Path(data_root), Path(run_dir), resume)
        return _train(cfg, runtime, Path(data_root), Path(run_dir), quiet, resume, resume_hint)


def _train(cfg: EncoderConfig, runtime: Runtime, data_root: Path, run_dir: Path, quiet: bool, resume: bool,
           resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    members = load_members(data_root, cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
    datas, single = members.data, members.single
    torch.manual_seed(t.seed)
    archs = {s: checkpoint.encoder_arch(cfg, d.n_voxels, cfg.model.train_backbone) for s, d in datas.items()}
    raw, nets = encoder_members(archs, build_backbone(cfg, data_root))
    adapted = None
    if t.init_from:
        from brainrecon.train.adapt import adapt_encoder
        (s, data), = datas.items()
        adapted = adapt_encoder(raw, Path(t.init_from), cfg, data)
    model, optimizer, scheduler, monitor = start_training(raw, cfg, runtime, run_dir, quiet)
    calls = {s: member_call(model, s, single) for s in datas}
    has_val = members.has_val
    steps = steps_per_epoch(members.n_rows, t.batch_size, runtime, not has_val, t.steps_per_epoch)

    def subject_loss(s: int, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        d, rows = datas[s], members.rows(idx, s)
        loss, parts = step_loss(calls[s], nets[s], d.train_images[rows], d.train_fmri[rows], cfg, runtime, gen)
        return loss, {"loss": loss, **parts}

    def train_epoch(epoch: int) -> dict:
        return run_epoch(epoch, steps, members.n_rows, t.batch_size, t.seed, runtime, optimizer, monitor,
                         lambda idx, gen: mean_over_subjects({s: subject_loss(s, idx, gen) for s in datas}))

    def validate(epoch: int) -> dict:
        """The validation split only: the test set is scored once, after training (metrics.json)."""
        if not has_val:
            return {}
        out = {"val_loss": 0.0, "val_median_r": 0.0}
        for s, d in datas.items():
            val = predict(nets[s], d.val_images)
            out["val_loss"] += float(losses.voxel_loss(val, d.val_fmri, cfg.loss.mse, cfg.loss.cosine)) / len(datas)
            out["val_median_r"] += float(voxel_correlation(val, d.val_fmri).median()) / len(datas)
        return out

    group = "" if single else f" ({len(datas)} subjects)"

    def line(r: dict) -> str:
        val = f"val loss {r['val_loss']:.4f}  val r median {r['val_median_r']:.3f}  " if has_val else ""
        return (f"encoder{group} epoch {r['epoch'] + 1}/{t.epochs}  train {r['train_loss']:.4f}  {val}"
                f"{r['seconds']:.0f}s")

    run = RunFolder(run_dir, to_dict(cfg), checkpoint.fingerprint(members.files()), resume, resume_hint,
                    checkpoint.run_extra("encoder", members, data_root))
    select = "val_loss" if has_val else None
    schedule = Schedule(t.epochs, t.seed, select, steps, "train-encoder")
    history = fit(run, schedule, runtime=runtime, model=model, optimizer=optimizer, scheduler=scheduler,
                  train_epoch=train_epoch, validate=validate, monitor=monitor, line=line)
    monitor.close()
    best = checkpoint.load_members(run_dir, "encoder", runtime.device)
    per_subject, figures = {}, {}
    for s, d in datas.items():
        r = voxel_correlation(predict(best[s], d.test_images), d.test_fmri)
        per_subject[s] = {**correlation_summary(r, d.noise_ceiling), "n_voxels": d.n_voxels,
                          "pairs": d.subset.record()}
        figures[s] = (r.cpu().numpy(), d.noise_ceiling.cpu().numpy())
    val_rule = next(iter(datas.values())).subset.val_rule
    metrics = {**subject_metrics(per_subject, ("median_r", "median_r_over_ceiling")), "epochs": len(history),
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "seconds": round(time.perf_counter() - start, 2), "modality": cfg.modality, "roi": cfg.data.roi,
               "selected_by": selection(select, val_rule if single else f"per subject, {val_rule}; their mean"),
               **({} if single else {"stimuli": members.stimuli}),
               **({"init_from": adapted} if adapted else {}), **runtime.record()}
    if runtime.is_main:
        write_records(run_dir, metrics, {s: d.subset for s, d in datas.items()})
        from brainrecon.viz import plot_voxel_correlation
        for s, (r, ceiling) in figures.items():
            plot_voxel_correlation(r, ceiling, run_dir / ("voxel_r.png" if single else f"voxel_r_subject{s}.png"))
    return metrics
