"""The decoder's training step (METHOD §4): the paired loss D, the ED cycle (unpaired images -> frozen encoder ->
decoder), the DE cycle (unpaired fMRI -> decoder -> frozen encoder) and the regularisers, with the exact caches of the
frozen networks' outputs. train/decoder.py builds one per subject of a run (a single-subject run is a group of one),
the members sharing the perceptual network and, where they read one data folder, the unpaired pool.
"""

from __future__ import annotations

from pathlib import Path

import torch

from brainrecon import losses
from brainrecon.config import DecoderConfig
from brainrecon.data.datasets import (
    PairedData,
    channel_norms,
    load_paired,
    load_unpaired_images,
    unpaired_fmri_batch,
    unpaired_pool,
)
from brainrecon.data.transforms import as_float
from brainrecon.errors import UserError
from brainrecon.models.decoder import Decoder
from brainrecon.models.perceptual import build_perceptual_net
from brainrecon.runtime import Runtime, autocast
from brainrecon.train import checkpoint
from brainrecon.train.distributed import place, wrap
from brainrecon.train.frozen_cache import FrozenCache, fill_in_order

ED_NOISE = {"snr": "measured single-trial noise (training-fMRI variance / (1 + SNR))",
            "residual": "the frozen encoder's residual SD on the rows it held out"}
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


def encoder_pairs(encoder, cfg: DecoderConfig) -> dict:
    """Which training pairs the frozen encoder saw, beside the decoder's: the same when data.pairs and train.seed (the
    pair draw's seed) agree. An encoder of other pairs is allowed (a diagnostic: the cycles through a better encoder)
    but recorded and announced, never silent."""
    ec = encoder.config
    same = (ec.data.pairs, ec.train.seed if ec.data.pairs else 0) == (cfg.data.pairs,
                                                                        cfg.train.seed if cfg.data.pairs else 0)
    show = lambda p: "all" if p == 0 else p                                                   # noqa: E731
    return {"encoder_pairs": show(ec.data.pairs), "encoder_pair_seed": ec.train.seed, "decoder_pairs":
            show(cfg.data.pairs), "same_pairs": same}


class DecoderStep:
    """One training step of the decoder (METHOD §4): the paired loss D, the ED cycle (unpaired images -> frozen
    encoder -> decoder), the DE cycle (unpaired fMRI -> decoder -> frozen encoder) and the regularisers. Built once
    per run by the trainer; tests/test_decoder.py drives it directly (the caches leave its losses and gradients as
    they were).

    The trainer passes each subject's `data` (loaded with the group's checks), and for every subject after the first
    `shared`, the first subject's step, whose perceptual network it reuses, and its unpaired pool (with the cache of
    the pool's features) when both read the same data folder; with `build=False` the trainer sets `raw` (this
    subject's decoder) and `model` (the wrapped run network, called for this subject). With `train.init_from` the
    decoder starts from a multi-subject run (train/adapt.py); `adapted` records how."""

    def __init__(self, cfg: DecoderConfig, runtime: Runtime, data_root: Path, encoder_run: Path | None,
                 shared: "DecoderStep | None" = None, build: bool = True, data: PairedData | None = None):
        t, lc = cfg.train, cfg.loss
        self.cfg, self.runtime, self.data_root = cfg, runtime, Path(data_root)
        if data is None:
            data = load_paired(data_root, cfg.data, cfg.modality, seed=t.seed, device=runtime.device)
        self.data = data
        self.w_d, self.w_ed, self.w_de = lc.weights if t.self_supervision else (lc.weights[0], 0.0, 0.0)
        self.encoder = None
        if self.w_ed > 0 or self.w_de > 0:
            if encoder_run is None:
                raise UserError("self-supervision needs a trained encoder: pass --encoder RUN (a train-encoder --out "
                                "folder), or --no-self-supervision")
            self.encoder = place(checkpoint.load_encoder(encoder_run, subject=cfg.data.subject), runtime, "encoder")
            check_encoder(self.encoder, cfg, data.n_voxels, Path(encoder_run))
            self.encoder.requires_grad_(False)
        self.encoder_pairs = encoder_pairs(self.encoder, cfg) if self.encoder is not None else None
        share_pool = shared is not None and shared.data_root.resolve() == self.data_root.resolve()
        if share_pool:
            self.pool = shared.pool
        else:
            self.pool = load_unpaired_images(data_root, cfg.data, cfg.modality, runtime.device) if self.w_ed > 0 \
                else None
        # the DE cycle's image-less fMRI: the test set's repeats (the paper) or each training sample as one 'repeat'
        self.unpaired_trials = data.test_trials if cfg.data.unpaired_fmri == "test" else data.train_fmri[:, None]
        self.perceptual = shared.perceptual if shared is not None else \
            build_perceptual_net(lc.perceptual_net, cfg.modality, data_root, seed=t.seed, width=lc.perceptual_width)
        image_loss = losses.ImageLoss(cfg.modality, channel_norms(data.train_images), self.perceptual,
                                      lc.perceptual_weights, lc.rgb_l1, lc.depth_l1, lc.tv)
        self.image_loss = place(image_loss, runtime, "perceptual")
        snr = data.snr.clamp_min(1e-3)
        self.snr_weight = snr / snr.mean()
        self.snr_inv = (1 / snr) / (1 / snr).mean()
        # not in the paper (off in its presets): the ED pseudo-fMRI's noise (loss.ed_noise, each voxel's measured
        # single-trial noise SD or the encoder's held-out residual SD) and the DE cycle's voxel weights
        self.heldout = self.measure_heldout(encoder_run)
        self.ed_noise_sd = None
        if lc.ed_noise and self.w_ed > 0:
            self.ed_noise_sd = self.heldout.residual_sd() if lc.ed_noise_from == "residual" else \
                measured_noise_sd(data.train_fmri, data.snr)
        self.de_weight = self.heldout.accuracy_weights() if lc.de_voxel_weights == "encoder_r" and self.w_de > 0 \
            else self.snr_weight
        self.raw = self.model = self.adapted = self.anchor_state = self.anchor = None
        if cfg.model.ridge_anchor:  # ridge on this run's own training pairs (train/ridge.py), before any weight
            from brainrecon.train.ridge import fit_cv
            self.anchor_state, self.anchor = fit_cv(cfg, data.train_fmri, data.train_images)
        if build:
            torch.manual_seed(t.seed)
            self.raw = self.install_anchor(Decoder(self.arch()))
            if t.init_from:
                from brainrecon.train.adapt import adapt_decoder
                self.adapted = adapt_decoder(self.raw, Path(t.init_from), cfg, data, data_root)
            self.model = wrap(self.raw, runtime, "decoder")
        # exact caches of the frozen networks' outputs on fixed images, filled by `fill_caches`
        self.pool_voxels = self.paired_features = self.pool_features = None
        if self.pool is not None:
            self.pool_voxels = FrozenCache("encoder_voxels_unpaired", self.pool,
                                           lambda u8: {"voxels": self.frozen(self.encoder)(as_float(u8)).float()})
        if self.perceptual is not None:
            features = lambda u8: self.frozen(self.image_loss.target_features)(as_float(u8))  # noqa: E731
            self.paired_features = FrozenCache("perceptual_paired", data.train_images, features)
            if share_pool:
                self.pool_features = shared.pool_features   # the same images through the same network: filled once
            elif self.pool is not None:
                self.pool_features = FrozenCache("perceptual_unpaired", self.pool, features)
        self.owns_pool_features = not share_pool

    def measure_heldout(self, encoder_run: Path | None):
        """The frozen encoder on this subject's rows it held out (train/heldout.py), where a switch reads it."""
        lc = self.cfg.loss
        if not ((lc.ed_noise and lc.ed_noise_from == "residual" and self.w_ed > 0)
                or (lc.de_voxel_weights == "encoder_r" and self.w_de > 0)):
            return None
        from brainrecon.train.heldout import measure
        return measure(self.frozen(self.encoder), Path(encoder_run), self.data, self.cfg.data.subject)

    def arch(self):
        """This subject's decoder arch (with the rank of its ridge anchor, if any)."""
        rank = self.anchor_state["left"].shape[1] if self.anchor_state else 0
        return checkpoint.decoder_arch(self.cfg, self.data.n_voxels, rank)

    def install_anchor(self, decoder: Decoder) -> Decoder:
        """The fitted ridge into `decoder`'s anchor buffers (model.ridge_anchor); the decoder unchanged without one."""
        if self.anchor_state:
            decoder.anchor.load_state_dict(self.anchor_state)
        return decoder

    def frozen(self, net):
        """The frozen networks (encoder, perceptual) run under bf16 autocast when it is on; the decoder itself trains
        in fp32: in bf16 its gradient drifted from fp32's (cosine 0.984 on a tiny model, tests/test_amp.py)."""
        def call(*args, **kwargs):
            with autocast(self.runtime):
                return net(*args, **kwargs)
        return call

    def record(self, data_root: Path) -> dict:
        """What the step computes, for metrics.json: the loss weights, the cycles' sources and the networks."""
        return {"loss_weights": [self.w_d, self.w_ed, self.w_de],
                "self_supervision": bool(self.w_ed > 0 or self.w_de > 0),
                "unpaired_fmri": self.unpaired_fmri(),
                "perceptual_net": self.perceptual.name if self.perceptual is not None else "none",
                "n_unpaired_images": int(len(self.pool)) if self.pool is not None else 0,
                "unpaired_pool": unpaired_pool(data_root, self.cfg.data)[1] if self.pool is not None else None,
                "frozen_encoder_pairs": self.encoder_pairs,
                **({"ed_noise": ED_NOISE[self.cfg.loss.ed_noise_from]} if self.ed_noise_sd is not None else {}),
                **({"de_voxel_weights": "the frozen encoder's held-out r, floored at 0, over its mean"}
                   if self.de_weight is not self.snr_weight else {}),
                **({"encoder_heldout_rows": self.heldout.n_rows} if self.heldout is not None else {}),
                **({"ridge_anchor": self.anchor} if self.anchor else {})}

    def unpaired_fmri(self) -> str:
        """The DE cycle's fMRI, in words: whether it reads the subject's test fMRI."""
        return UNPAIRED_FMRI[self.cfg.data.unpaired_fmri] if self.w_de > 0 else "none (no DE cycle)"

    def caches(self) -> list[FrozenCache]:
        """This step's caches, in the order they are worth filling (a shared one only in the step that owns it)."""
        own_pool = self.pool_features if self.owns_pool_features else None
        return [c for c in (self.pool_voxels, self.paired_features, own_pool) if c is not None]

    def fill_caches(self, progress=None) -> dict:
        return fill_in_order(self.caches(), self.cfg.train.cache_mb, progress)

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
            if self.ed_noise_sd is not None:
                voxels = voxels + self.ed_noise_sd * torch.randn(voxels.shape, generator=gen).to(voxels.device)
            ed_terms = image_loss(self.model(voxels), as_float(self.pool[u]),
                                  self.pool_features.get(u) if self.pool_features else None)
            terms["loss_ED"] = sum(ed_terms.values())
        if self.w_de > 0:
            fmri = unpaired_fmri_batch(self.unpaired_trials, t.unpaired_fmri_batch, t.test_avg_fraction, gen)
            cycled = self.frozen(self.encoder)(self.model(fmri)).float()
            terms["loss_DE"] = losses.fmri_loss(cycled, fmri, self.de_weight, self.cfg.loss.fmri_cosine)
        reg = self.regularisers()
        loss = self.w_d * terms["loss_D"] + self.w_ed * terms.get("loss_ED", 0) \
            + self.w_de * terms.get("loss_DE", 0) + sum(reg.values())
        return loss, {"loss": loss, **terms, **reg, **{f"D_{k}": v for k, v in d_terms.items()}}


def measured_noise_sd(train_fmri: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """(V,) each voxel's single-trial noise SD: its variance over the training trials split by the release's SNR
    (signal variance / noise variance), noise variance = variance / (1 + SNR)."""
    if len(train_fmri) < 2:
        raise UserError("loss.ed_noise needs at least 2 training pairs to measure each voxel's variance")
    return (train_fmri.float().var(0) / (1 + snr.float().clamp_min(0))).sqrt()
