"""train-decoder --subjects 1,2,4,5: one decoder for several subjects who saw the same images.

The image-generating trunk is shared, the voxel -> seed-features input layer is per subject (models/subjects.py). Each
step runs the single-subject step (train/decoder_step.py: loss D on the subject's pairs, the ED cycle through the
subject's own frozen encoder, the DE cycle on the subject's own unpaired fMRI, the regularisers) for every subject and
minimises their mean: with one subject it is that step, and the L1 on the shared convolutions counts once. The
frozen encoder is a multi-subject train-encoder run holding every subject.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from brainrecon.atomic import write_text_atomic
from brainrecon.config import DecoderConfig, to_dict
from brainrecon.correlation import pearson
from brainrecon.data.transforms import as_float
from brainrecon.models.perceptual import stand_in_note
from brainrecon.models.subjects import SubjectDecoders
from brainrecon.runtime import Runtime
from brainrecon.train import checkpoint
from brainrecon.train.adapt import stimulus_record
from brainrecon.train.decoder_step import DecoderStep
from brainrecon.train.distributed import steps_per_epoch, wrap
from brainrecon.train.frozen_cache import fill_in_order
from brainrecon.train.group_encoder import group_files, group_rows
from brainrecon.train.loop import RunFolder, Schedule, fit, run_epoch, selection
from brainrecon.train.monitor import Monitor


class GroupDecoderStep:
    """One DecoderStep per subject, their decoders the members of one SubjectDecoders."""

    def __init__(self, cfg: DecoderConfig, runtime: Runtime, data_root: Path, encoder_run: Path | None):
        self.cfg, self.steps, first = cfg, {}, None
        for s in cfg.data.subjects:
            step = DecoderStep(checkpoint.member_config(cfg, s), runtime, data_root, encoder_run, shared=first,
                               build=False)
            for cache in step.caches():
                cache.name = f"{cache.name}_subject{s}"
            self.steps[s], first = step, first or step
        torch.manual_seed(cfg.train.seed)
        self.raw = SubjectDecoders({s: checkpoint.decoder_arch(cfg, st.data.n_voxels) for s, st in self.steps.items()})
        self.model = wrap(self.raw, runtime, "decoder")
        for s, step in self.steps.items():
            step.raw, step.model = self.raw.members[str(s)], partial(self.model, subject=s)
        self.first = first

    def fill_caches(self, progress=None) -> dict:
        caches = [c for step in self.steps.values() for c in step.caches()]
        return fill_in_order(caches, self.cfg.train.cache_mb, progress)

    def loss(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        total, logged = 0, {}
        for s, step in self.steps.items():
            loss, parts = step.loss(group_rows(idx, step.data), gen)
            total = total + loss / len(self.steps)
            for k, v in parts.items():
                logged[k] = logged.get(k, 0) + v.detach() / len(self.steps)
            logged[f"loss_subject{s}"] = loss.detach()
        logged["loss"] = total
        return total, logged


def train_group_decoder(cfg: DecoderConfig, runtime: Runtime, data_root: Path, run_dir: Path,
                        encoder_run: Path | None, quiet: bool, resume: bool, resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    group = GroupDecoderStep(cfg, runtime, data_root, encoder_run)
    steps_by_subject, first = group.steps, group.first
    optimizer = torch.optim.Adam(group.raw.parameters(), lr=t.lr, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, t.milestones, t.gamma)
    monitor = Monitor(run_dir, enabled=runtime.is_main, quiet=quiet)
    if first.perceptual is not None and (note := stand_in_note(first.perceptual.name, cfg.modality)):
        monitor.say(note)
    datas = {s: st.data for s, st in steps_by_subject.items()}
    n_rows = max(len(d.train_images) for d in datas.values())
    has_val = all(len(d.val_fmri) > 0 for d in datas.values())
    steps = steps_per_epoch(n_rows, t.batch_size, runtime, not has_val, t.steps_per_epoch)
    cache_start = time.perf_counter()
    cache = group.fill_caches(monitor.counting)
    cache["seconds"] = round(time.perf_counter() - cache_start, 2)

    def train_epoch(epoch: int) -> dict:
        return run_epoch(epoch, steps, n_rows, t.batch_size, t.seed, runtime, optimizer, monitor, group.loss)

    def validate(epoch: int) -> dict:
        if not has_val:
            return {}
        out = {"val_loss_D": 0.0, "val_pixcorr": 0.0}
        for s, st in steps_by_subject.items():
            pred, truth = st.raw(st.data.val_fmri).float(), as_float(st.data.val_images)
            out["val_loss_D"] += float(sum(st.image_loss(pred, truth).values())) / len(datas)
            out["val_pixcorr"] += float(pearson(pred.flatten(1), truth.flatten(1)).mean()) / len(datas)
        return out

    select = "val_loss_D" if has_val else None

    def line(r: dict) -> str:
        parts = "  ".join(f"{k[6:]} {r[k]:.3f}" for k in ("train_loss_D", "train_loss_ED", "train_loss_DE") if k in r)
        val = f"val D {r['val_loss_D']:.3f}  val pixcorr {r['val_pixcorr']:.3f}  " if has_val else ""
        return f"decoder ({len(datas)} subjects) epoch {r['epoch'] + 1}/{t.epochs}  {parts}  {val}{r['seconds']:.0f}s"

    extra = {"n_voxels": 0, "subjects": {str(s): d.n_voxels for s, d in datas.items()}, "kind": "decoder",
             "model_kind": "deep", "encoder_run": str(Path(encoder_run).resolve()) if encoder_run else "",
             "data_dir": str(data_root.resolve()), "stimulus_file": stimulus_record(first.data.files[0])}
    run = RunFolder(run_dir, to_dict(cfg), checkpoint.fingerprint(group_files(datas)), resume, resume_hint, extra)
    schedule = Schedule(t.epochs, t.seed, select, steps, "train-decoder", t.warn_seconds)
    history = fit(run, schedule, runtime=runtime, model=group.model, optimizer=optimizer, scheduler=scheduler,
                  train_epoch=train_epoch, validate=validate, monitor=monitor, line=line)
    monitor.close()
    best = checkpoint.load_group_decoder(run_dir, runtime.device)
    per_subject = {}
    with torch.no_grad():
        for s, d in datas.items():
            pred = best.members[str(s)](d.test_fmri).float()
            per_subject[str(s)] = {"test_pixcorr": float(pearson(pred.flatten(1), as_float(d.test_images).flatten(1))
                                                         .mean()), "n_voxels": d.n_voxels, "pairs": d.subset.record()}
    metrics = {"test_pixcorr": float(np.mean([p["test_pixcorr"] for p in per_subject.values()])),
               "summary": "test_pixcorr: the mean over subjects", "subjects": per_subject,
               "epochs": len(history), "seconds": round(time.perf_counter() - start, 2), "modality": cfg.modality,
               "roi": cfg.data.roi, **first.record(data_root),
               "frozen_cache": cache,
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "selected_by": selection(select, f"per subject, {first.data.subset.val_rule}; their mean"),
               **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
