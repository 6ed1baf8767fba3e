"""train-decoder: voxels -> image, supervised on the pairs plus the two self-supervised cycles (METHOD §4).

Each step mixes three batches: paired (image, fMRI) -> loss D; unpaired images -> frozen encoder -> decoder -> loss ED;
unpaired (image-less test) fMRI -> decoder -> frozen encoder -> loss DE. Only decoder weights train.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from brainrecon.atomic import write_text_atomic
from brainrecon.config import DecoderConfig, to_dict
from brainrecon.correlation import pearson
from brainrecon.data.pair_subset import write_listing
from brainrecon.data.transforms import as_float
from brainrecon.locks import hold
from brainrecon.models.perceptual import stand_in_note
from brainrecon.runtime import Runtime, setup
from brainrecon.train import checkpoint
from brainrecon.train.decoder_step import UNPAIRED_FMRI, DecoderStep, check_encoder  # noqa: F401 (importable here)
from brainrecon.train.distributed import steps_per_epoch
from brainrecon.train.loop import RunFolder, Schedule, fit, run_epoch, selection
from brainrecon.train.monitor import Monitor


def train_decoder(cfg: DecoderConfig, data_root: Path, run_dir: Path, encoder_run: Path | None = None,
                  resume: bool = False, quiet: bool = False, resume_hint: str = "--resume") -> dict:
    """Train (deep: select on validation, write best.pt and metrics.json; ridge: closed form); returns the metrics.
    `resume_hint` is how an interrupted run says to continue it (the caller knows its command line)."""
    runtime = setup(cfg.train.device, cfg.train.amp, cfg.train.seed, cfg.train.deterministic, cfg.train.threads)
    with hold(run_dir, runtime.is_main):
        if cfg.model.kind == "ridge":
            from brainrecon.train.ridge import train_ridge
            return train_ridge(cfg, runtime, Path(data_root), Path(run_dir), quiet=quiet)
        if cfg.data.subjects:
            from brainrecon.train.group_decoder import train_group_decoder
            return train_group_decoder(cfg, runtime, Path(data_root), Path(run_dir), encoder_run, quiet, resume,
                                       resume_hint)
        return _train_decoder(cfg, runtime, Path(data_root), Path(run_dir), encoder_run, quiet, resume, resume_hint)


def _train_decoder(cfg: DecoderConfig, runtime: Runtime, data_root: Path, run_dir: Path, encoder_run: Path | None,
                   quiet: bool, resume: bool, resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    step = DecoderStep(cfg, runtime, data_root, encoder_run)
    data, raw, model, image_loss = step.data, step.raw, step.model, step.image_loss
    optimizer = torch.optim.Adam(raw.parameters(), lr=t.lr, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, t.milestones, t.gamma)
    monitor = Monitor(run_dir, enabled=runtime.is_main, quiet=quiet)
    if step.perceptual is not None and (note := stand_in_note(step.perceptual.name, cfg.modality)):
        monitor.say(note)
    steps = steps_per_epoch(len(data.train_images), t.batch_size, runtime, len(data.val_images) == 0,
                            t.steps_per_epoch)
    cache_start = time.perf_counter()
    cache = step.fill_caches(monitor.counting)
    cache["seconds"] = round(time.perf_counter() - cache_start, 2)

    def train_epoch(epoch: int) -> dict:
        return run_epoch(epoch, steps, len(data.train_images), t.batch_size, t.seed, runtime, optimizer, monitor,
                         step.loss)

    def validate(epoch: int) -> dict:
        """The validation split only (TensorBoard pictures from it too): the test set is scored after training."""
        if len(data.val_fmri) == 0:
            return {}
        pred, truth = raw(data.val_fmri).float(), as_float(data.val_images)
        out = {"val_loss_D": float(sum(image_loss(pred, truth).values())),
               "val_pixcorr": float(pearson(pred.flatten(1), truth.flatten(1)).mean())}
        if runtime.is_main and (epoch % 5 == 0 or epoch + 1 == t.epochs):
            from torchvision.utils import make_grid
            show = torch.cat([truth[:8], pred[:8]])[:, :3] if pred.shape[1] >= 3 else \
                torch.cat([truth[:8], pred[:8]]).expand(-1, 3, -1, -1)
            monitor.image("validation reconstructions (top: truth)", make_grid(show, nrow=8), epoch)
        return out

    has_val = len(data.val_fmri) > 0
    select = "val_loss_D" if has_val else None  # no validation split: keep the last epoch, never the test loss

    def line(r: dict) -> str:
        parts = "  ".join(f"{k[6:]} {r[k]:.3f}" for k in ("train_loss_D", "train_loss_ED", "train_loss_DE") if k in r)
        val = f"val D {r['val_loss_D']:.3f}  val pixcorr {r['val_pixcorr']:.3f}  " if has_val else ""
        return f"decoder epoch {r['epoch'] + 1}/{t.epochs}  {parts}  {val}{r['seconds']:.0f}s"

    extra = {"n_voxels": data.n_voxels, "kind": "decoder", "model_kind": "deep",
             "encoder_run": str(Path(encoder_run).resolve()) if encoder_run else "",
             "data_dir": str(data_root.resolve())}
    run = RunFolder(run_dir, to_dict(cfg), checkpoint.fingerprint(data.files), resume, resume_hint, extra)
    schedule = Schedule(t.epochs, t.seed, select, steps, "train-decoder", t.warn_seconds)
    history = fit(run, schedule, runtime=runtime, model=model, optimizer=optimizer, scheduler=scheduler,
                  train_epoch=train_epoch, validate=validate, monitor=monitor, line=line)
    monitor.close()
    best, _ = checkpoint.load_decoder(run_dir, runtime.device)
    with torch.no_grad():
        pred = best(data.test_fmri).float()
        test_pixcorr = float(pearson(pred.flatten(1), as_float(data.test_images).flatten(1)).mean())
    metrics = {"epochs": len(history), "seconds": round(time.perf_counter() - start, 2),
               "modality": cfg.modality, "subject": cfg.data.subject, "roi": cfg.data.roi, "n_voxels": data.n_voxels,
               **step.record(data_root),
               "frozen_cache": cache,
               "test_pixcorr": test_pixcorr,
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "selected_by": selection(select, data.subset.val_rule), "pairs": data.subset.record(),
               **({"init_from": step.adapted} if step.adapted else {}),
               **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        write_listing(run_dir, data.subset)
    return metrics
