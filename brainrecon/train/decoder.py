"""train-decoder: voxels -> image, supervised on the pairs plus the two self-supervised cycles (METHOD §4).

Each step mixes three batches: paired (image, fMRI) -> loss D; unpaired images -> frozen encoder -> decoder -> loss ED;
unpaired (image-less test) fMRI -> decoder -> frozen encoder -> loss DE. Only decoder weights train.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from brainrecon import losses
from brainrecon.atomic import write_text_atomic
from brainrecon.config import DecoderConfig, to_dict
from brainrecon.correlation import pearson
from brainrecon.data.datasets import (channel_norms, load_paired, load_unpaired_images, unpaired_fmri_batch,
                                      unpaired_pool)
from brainrecon.data.transforms import as_float
from brainrecon.errors import UserError
from brainrecon.locks import hold
from brainrecon.models.decoder import Decoder
from brainrecon.models.perceptual import build_perceptual_net, stand_in_note
from brainrecon.runtime import Runtime, autocast, setup
from brainrecon.train import checkpoint
from brainrecon.train.distributed import place, steps_per_epoch, wrap
from brainrecon.train.frozen_cache import FrozenCache, fill_in_order
from brainrecon.train.loop import RunFolder, Schedule, fit, run_epoch, selection
from brainrecon.train.monitor import Monitor


UNPAIRED_FMRI = {"test": "test: the test set's fMRI without their images, as the paper (transductive)",
                 "train": "train: the training fMRI only (strictly inductive)"}


def check_encoder(encoder, cfg: DecoderConfig, n_voxels: int, encoder_run: Path) -> None:
    ec = encoder.config
    if ec.modality != cfg.modality:
        raise UserError(f"{encoder_run}: the encoder was trained on {ec.modality}, the decoder asks for "
                        f"--modality {cfg.modality}; train an encoder with --modality {cfg.modality}")
    if encoder.arch.n_voxels != n_voxels or ec.data.subject != cfg.data.subject or ec.data.roi != cfg.data.roi:
        raise UserError(f"{encoder_run}: encoder has {encoder.arch.n_voxels} voxels (subject {ec.data.subject}, "
                        f"ROI {ec.data.roi}) but the data has {n_voxels} (subject {cfg.data.subject}, ROI "
                        f"{cfg.data.roi}); use the encoder of the same subject and ROI")


def train_decoder(cfg: DecoderConfig, data_root: Path, run_dir: Path, encoder_run: Path | None = None,
                  resume: bool = False, quiet: bool = False, resume_hint: str = "--resume") -> dict:
    """Train (deep: select on validation, write best.pt and metrics.json; ridge: closed form); returns the metrics.
    `resume_hint` is how an interrupted run says to continue it (the caller knows its command line)."""
    runtime = setup(cfg.train.device, cfg.train.amp, cfg.train.seed, cfg.train.deterministic, cfg.train.threads)
    with hold(run_dir, runtime.is_main):
        if cfg.model.kind == "ridge":
            from brainrecon.train.ridge import train_ridge
            return train_ridge(cfg, runtime, Path(data_root), Path(run_dir), quiet=quiet)
        return _train_decoder(cfg, runtime, Path(data_root), Path(run_dir), encoder_run, quiet, resume, resume_hint)


class DecoderStep:
    """One training step of the decoder (METHOD §4): the paired loss D, the ED cycle (unpaired images -> frozen
    encoder -> decoder), the DE cycle (unpaired fMRI -> decoder -> frozen encoder) and the regularisers. Built once
    per run by the trainer; tests/test_decoder.py drives it directly (the caches leave its losses and gradients as
    they were)."""

    def __init__(self, cfg: DecoderConfig, runtime: Runtime, data_root: Path, encoder_run: Path | None):
        t, lc = cfg.train, cfg.loss
        self.cfg, self.runtime = cfg, runtime
        self.data = data = load_paired(data_root, cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
        self.w_d, self.w_ed, self.w_de = lc.weights if t.self_supervision else (lc.weights[0], 0.0, 0.0)
        self.encoder = None
        if self.w_ed > 0 or self.w_de > 0:
            if encoder_run is None:
                raise UserError("self-supervision needs a trained encoder: pass --encoder RUN (a train-encoder --out "
                                "folder), or --no-self-supervision")
            self.encoder = place(checkpoint.load_encoder(encoder_run), runtime, "encoder")
            check_encoder(self.encoder, cfg, data.n_voxels, Path(encoder_run))
            self.encoder.requires_grad_(False)
        self.pool = load_unpaired_images(data_root, cfg.data, cfg.modality, runtime.device) if self.w_ed > 0 else None
        # the DE cycle's image-less fMRI: the test set's repeats (the paper) or each training sample as one 'repeat'
        self.unpaired_trials = data.test_trials if cfg.data.unpaired_fmri == "test" else data.train_fmri[:, None]
        self.perceptual = build_perceptual_net(lc.perceptual_net, cfg.modality, data_root, seed=t.seed,
                                               width=lc.perceptual_width)
        image_loss = losses.ImageLoss(cfg.modality, channel_norms(data.train_images), self.perceptual,
                                      lc.perceptual_weights, lc.rgb_l1, lc.depth_l1, lc.tv)
        self.image_loss = place(image_loss, runtime, "perceptual")
        snr = data.snr.clamp_min(1e-3)
        self.snr_weight = snr / snr.mean()
        self.snr_inv = (1 / snr) / (1 / snr).mean()
        torch.manual_seed(t.seed)
        self.raw = Decoder(checkpoint.decoder_arch(cfg, data.n_voxels))
        self.model = wrap(self.raw, runtime, "decoder")
        # exact caches of the frozen networks' outputs on fixed images, filled by `fill_caches`
        self.pool_voxels = self.paired_features = self.pool_features = None
        if self.pool is not None:
            self.pool_voxels = FrozenCache("encoder_voxels_unpaired", self.pool,
                                           lambda u8: {"voxels": self.frozen(self.encoder)(as_float(u8)).float()})
        if self.perceptual is not None:
            features = lambda u8: self.frozen(self.image_loss.target_features)(as_float(u8))  # noqa: E731
            self.paired_features = FrozenCache("perceptual_paired", data.train_images, features)
            if self.pool is not None:
                self.pool_features = FrozenCache("perceptual_unpaired", self.pool, features)

    def frozen(self, net):
        """The frozen networks (encoder, perceptual) run under bf16 autocast when it is on; the decoder itself trains
        in fp32: in bf16 its gradient drifted from fp32's (cosine 0.984 on a tiny model, tests/test_amp.py)."""
        def call(*args, **kwargs):
            with autocast(self.runtime):
                return net(*args, **kwargs)
        return call

    def fill_caches(self, progress=None) -> dict:
        caches = [c for c in (self.pool_voxels, self.paired_features, self.pool_features) if c is not None]
        return fill_in_order(caches, self.cfg.train.cache_mb, progress)

    def regularisers(self) -> dict:
        lc = self.cfg.loss
        return {"reg_gl": losses.decoder_group_lasso(self.raw.input_map(), self.snr_inv, lc.gl_l1, lc.gl_gl),
                "reg_l1_convs": lc.l1_convs * losses.l1(m.weight for m in self.raw.modules()
                                                        if isinstance(m, torch.nn.Conv2d))}

    def loss(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        """(total loss, every logged term) for the paired rows `idx`; `gen` draws the unpaired batches."""
        t, data, image_loss = self.cfg.train, self.data, self.frozen(self.image_loss)
        terms = {}
        d_terms = image_loss(self.model(data.train_fmri[idx]), as_float(data.train_images[idx]),
                             self.paired_features.get(idx) if self.paired_features else None)
        terms["loss_D"] = sum(d_terms.values())
        if self.w_ed > 0:
            u = torch.randint(0, len(self.pool), (t.unpaired_image_batch,), generator=gen).to(self.runtime.device)
            voxels = self.pool_voxels.get(u)["voxels"]
            ed_terms = image_loss(self.model(voxels), as_float(self.pool[u]),
                                  self.pool_features.get(u) if self.pool_features else None)
            terms["loss_ED"] = sum(ed_terms.values())
        if self.w_de > 0:
            fmri = unpaired_fmri_batch(self.unpaired_trials, t.unpaired_fmri_batch, t.test_avg_fraction, gen)
            cycled = self.frozen(self.encoder)(self.model(fmri)).float()
            terms["loss_DE"] = losses.fmri_loss(cycled, fmri, self.snr_weight, self.cfg.loss.fmri_cosine)
        reg = self.regularisers()
        loss = self.w_d * terms["loss_D"] + self.w_ed * terms.get("loss_ED", 0) \
            + self.w_de * terms.get("loss_DE", 0) + sum(reg.values())
        return loss, {"loss": loss, **terms, **reg, **{f"D_{k}": v for k, v in d_terms.items()}}


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
    steps = steps_per_epoch(len(data.train_images), t.batch_size, runtime, cfg.data.val_fraction == 0)
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
               "loss_weights": [step.w_d, step.w_ed, step.w_de],
               "self_supervision": bool(step.w_ed > 0 or step.w_de > 0),
               "unpaired_fmri": UNPAIRED_FMRI[cfg.data.unpaired_fmri] if step.w_de > 0 else "none (no DE cycle)",
               "perceptual_net": step.perceptual.name if step.perceptual is not None else "none",
               "n_unpaired_images": int(len(step.pool)) if step.pool is not None else 0,
               "unpaired_pool": unpaired_pool(data_root, cfg.data)[1] if step.pool is not None else None,
               "frozen_cache": cache,
               "test_pixcorr": test_pixcorr,
               "best_epoch": int(checkpoint.load(run_dir / checkpoint.BEST)["epoch"]) + 1,
               "selected_by": selection(select, cfg.data.val_fraction), **runtime.record()}
    if runtime.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
