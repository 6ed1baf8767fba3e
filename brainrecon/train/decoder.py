"""train-decoder: voxels -> image, supervised on the pairs plus the two self-supervised cycles (METHOD §4).

Each step mixes three batches: paired (image, fMRI) -> loss D; unpaired images -> frozen encoder -> decoder -> loss ED;
unpaired (image-less test) fMRI -> decoder -> frozen encoder -> loss DE. Only decoder weights train.

One trainer for one subject or several (`data.subjects`): a single-subject run is a group of one. With several, the
image-generating trunk is shared and the voxel -> seed-features input layer is per subject (models/subjects.py); each
step runs the single-subject step (train/decoder_step.py) for every subject on its own pairs, its own unpaired fMRI and
its unpaired images through its own frozen encoder, and minimises their mean: with one subject it is that step, bit
for bit. The frozen encoder of a group is a train-encoder run of the same subjects.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from brainrecon.config import DecoderConfig, to_dict
from brainrecon.correlation import pearson
from brainrecon.data.group import load_members
from brainrecon.data.transforms import as_float
from brainrecon.locks import hold
from brainrecon.models.perceptual import stand_in_note
from brainrecon.models.subjects import decoder_members, member_call
from brainrecon.runtime import Runtime, setup
from brainrecon.train import checkpoint
from brainrecon.train.decoder_step import UNPAIRED_FMRI, DecoderStep, check_encoder  # noqa: F401 (importable here)
from brainrecon.train.distributed import steps_per_epoch, wrap
from brainrecon.train.frozen_cache import fill_in_order
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
from brainrecon.train.monitor import Monitor


def train_decoder(cfg: DecoderConfig, data_root: Path, run_dir: Path, encoder_run: Path | None = None,
                  resume: bool = False, quiet: bool = False, resume_hint: str = "--resume") -> dict:
    """Train (deep: select on validation, write best.pt and metrics.json; ridge: closed form); returns the metrics.
    `resume_hint` is how an interrupted run says to continue it (the caller knows its command line)."""
    runtime = setup(cfg.train.device, cfg.train.amp, cfg.train.seed, cfg.train.deterministic, cfg.train.threads)
    with hold(run_dir, runtime.is_main):
        if cfg.model.kind == "ridge":
            from brainrecon.train.ridge import train_ridge
            return train_ridge(cfg, runtime, Path(data_root), Path(run_dir), quiet=quiet, resume=resume)
        return _train(cfg, runtime, Path(data_root), Path(run_dir), encoder_run, quiet, resume, resume_hint)


def build_steps(cfg: DecoderConfig, runtime: Runtime, data_root: Path, encoder_run: Path | None):
    """(each subject's DecoderStep, the run network to train, the members' data): the steps built in --subjects order,
    then the decoders, seeded by train.seed (a group of one builds exactly what a single-subject run always did)."""
    members = load_members(data_root, cfg.data, cfg.modality, seed=cfg.train.seed, device=runtime.device)
    steps, first = {}, None
    for s, data in members.data.items():
        own = cfg if members.single else checkpoint.member_config(cfg, s)
        step = DecoderStep(own, runtime, members.roots[s], encoder_run, shared=first, build=False, data=data)
        if not members.single:
            for cache in step.caches():
                cache.name = f"{cache.name}_subject{s}"
        steps[s], first = step, first or step
    torch.manual_seed(cfg.train.seed)
    raw, nets = decoder_members({s: st.arch() for s, st in steps.items()})
    for s, st in steps.items():
        st.install_anchor(nets[s])
    if cfg.train.init_from:
        from brainrecon.train.adapt import adapt_decoder
        first.adapted = adapt_decoder(raw, Path(cfg.train.init_from), cfg, first.data, data_root)
    model = wrap(raw, runtime, "decoder")
    for s, step in steps.items():
        step.raw, step.model = nets[s], member_call(model, s, members.single)
    return steps, raw, model, members


def _train(cfg: DecoderConfig, runtime: Runtime, data_root: Path, run_dir: Path, encoder_run: Path | None,
           quiet: bool, resume: bool, resume_hint: str) -> dict:
    start = time.perf_counter()
    t = cfg.train
    steps_by, raw, model, members = build_steps(cfg, runtime, data_root, encoder_run)
    first, single = next(iter(steps_by.values())), members.single
    optimizer = torch.optim.Adam(raw.parameters(), lr=t.lr, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, t.milestones, t.gamma)
    monitor = Monitor(run_dir, enabled=runtime.is_main, quiet=quiet)
    if first.perceptual is not None and (note := stand_in_note(first.perceptual.name, cfg.modality)):
        monitor.say(note)
    if first.encoder_pairs is not None and not first.encoder_pairs["same_pairs"]:
        e = first.encoder_pairs
        monitor.say(f"note: the frozen encoder was trained on other pairs (data.pairs {e['encoder_pairs']}, seed "
                    f"{e['encoder_pair_seed']}) than this decoder's ({e['decoder_pairs']}); metrics.json records it")
    has_val = members.has_val
    steps = steps_per_epoch(members.n_rows, t.batch_size, runtime, not has_val, t.steps_per_epoch)
    cache_start = time.perf_counter()
    cache = fill_in_order([c for st in steps_by.values() for c in st.caches()], t.cache_mb, monitor.counting)
    cache["seconds"] = round(time.perf_counter() - cache_start, 2)

    def batch_loss(idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        return mean_over_subjects({s: st.loss(members.rows(idx, s), gen) for s, st in steps_by.items()})

    def train_epoch(epoch: int) -> dict:
        return run_epoch(epoch, steps, members.n_rows, t.batch_size, t.seed, runtime, optimizer, monitor, batch_loss)

    def validate(epoch: int) -> dict:
        """The validation split only (TensorBoard pictures from the first subject's): the test set is scored after
        training."""
        if not has_val:
            return {}
        out = {"val_loss_D": 0.0, "val_pixcorr": 0.0}
        for st in steps_by.values():
            pred, truth = st.raw(st.data.val_fmri).float(), as_float(st.data.val_images)
            out["val_loss_D"] += float(sum(st.image_loss(pred, truth).values())) / len(steps_by)
            out["val_pixcorr"] += float(pearson(pred.flatten(1), truth.flatten(1)).mean()) / len(steps_by)
            if st is first and runtime.is_main and (epoch % 5 == 0 or epoch + 1 == t.epochs):
                from torchvision.utils import make_grid
                show = torch.cat([truth[:8], pred[:8]])[:, :3] if pred.shape[1] >= 3 else \
                    torch.cat([truth[:8], pred[:8]]).expand(-1, 3, -1, -1)
                monitor.image("validation reconstructions (top: truth)", make_grid(show, nrow=8), epoch)
        return out

    select = "val_loss_D" if has_val else None  # no validation split: keep the last epoch, never the test loss
    group = "" if single else f" ({len(steps_by)} subjects)"

    def line(r: dict) -> str:
        parts = "  ".join(f"{k[6:]} {r[k]:.3f}" for k in ("train_loss_D", "train_loss_ED", "train_loss_DE") if k in r)
        val = f"val D {r['val_loss_D']:.3f}  val pixcorr {r['val_pixcorr']:.3f}  " if has_val else ""
        return f"decoder{group} epoch {r['epoch'] + 1}/{t.epochs}  {parts}  {val}{r['seconds']:.0f}s"

    extra = {**checkpoint.run_extra("decoder", members, data_root), "model_kind": "deep",
             "encoder_run": str(Path(encoder_run).resolve()) if encoder_run else ""}
    run = RunFolder(run_dir, to_dict(cfg), checkpoint.fingerprint(members.files()), resume, resume_hint, extra)
    schedule = Schedule(t.epochs, t.seed, select, steps, "train-decoder", t.warn_seconds)
    history = fit(run, schedule, runtime=runtime, model=model, optimizer=optimizer, scheduler=scheduler,
                  train_epoch=train_epoch, validate=validate, monitor=monitor, line=line)
    monitor.close()
    best = checkpoint.load_members(run_dir, "decoder", runtime.device)
    per_subject = {}
    with torch.no_grad():
        for s, st in steps_by.items():
            d = st.data
            pred = best[s](d.test_fmri).float()
            per_subject[s] = {"test_pixcorr": float(pearson(pred.flatten(1), as_float(d.test_images).flatten(1))
                                                    .mean()), "n_voxels": d.n_voxels, "pairs": d.subset.record()}
            if not single:
                per_subject[s]["unpaired_fmri"] = st.unpaired_fmri()
    val_rule = first.data.subset.val_rule
    metrics = {**subject_metrics(per_subject, ("test_pixcorr",)), "epochs": len(history),
               "seconds": round(time.perf_counter() - start, 2), "modality": cfg.modality, "roi": cfg.data.roi,
               **first.record(members.roots[next(iter(steps_by))]), "frozen_cache": cache,
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "selected_by": selection(select, val_rule if single else f"per subject, {val_rule}; their mean"),
               **({} if single else {"stimuli": members.stimuli}),
               **({"init_from": first.adapted} if first.adapted else {}), **runtime.record()}
    if runtime.is_main:
        write_records(run_dir, metrics, {s: st.data.subset for s, st in steps_by.items()})
    return metrics
