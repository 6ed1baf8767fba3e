"""Training data as whole tensors: paired (stimulus, voxels) splits, unpaired fMRI and the unpaired image pool.

Images stay uint8 (N, C, R, R) on the device and become [0, 1] floats per batch; nothing is decoded per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import brainrecon.data.imagenet as imagenet
import brainrecon.data.layout as layout
import brainrecon.data.release as release
from brainrecon.config import DataConfig
from brainrecon.data.pair_subset import PairSubset, keep_pairs, validation_size
from brainrecon.data.transforms import as_float


@dataclass
class PairedData:
    train_images: torch.Tensor    # (N, C, R, R) uint8, row i is the image shown for train_fmri[i]
    train_fmri: torch.Tensor      # (N, V)
    val_images: torch.Tensor
    val_fmri: torch.Tensor
    test_images: torch.Tensor     # (n_test, C, R, R) uint8
    test_fmri: torch.Tensor       # (n_test, V) averaged over repeats
    test_trials: torch.Tensor     # (n_test, repeats, V)
    noise_ceiling: torch.Tensor   # (V,)
    snr: torch.Tensor             # (V,)
    files: list[Path]
    subset: PairSubset            # which training stimuli were kept (data.pairs) and how validation was split
    train_stimuli: np.ndarray     # (N,) the stimulus index (into the stimulus file's training images) of each row
    val_stimuli: np.ndarray | None = None  # (n_val,) the same for each validation row

    @property
    def n_voxels(self) -> int:
        return self.train_fmri.shape[1]


def _chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def stimulus_path(root: Path, modality: str, resolution: int) -> Path:
    return layout.stimuli_file(root, resolution) if modality == "rgb" else layout.rgbd_file(root, resolution)


def load_paired(root: Path, cfg: DataConfig, modality: str, seed: int = 0, device="cpu",
                val_stimuli: np.ndarray | None = None) -> PairedData:
    """A subject's paired splits. The validation split holds whole stimuli (every row showing one): the stimuli of
    the first rows of a seeded shuffle (the rows themselves where each stimulus is shown once), or `val_stimuli` when
    given (a group's members validate on the same images)."""
    stimuli = release.load_stimuli(root, modality, cfg.resolution)
    subject = release.load_subject(root, cfg.subject, cfg.roi)
    stim_path = stimulus_path(root, modality, cfg.resolution)
    release.check_pairing(subject, stimuli, stim_path)
    subset = keep_pairs(subject.train_labels, cfg.pairs, seed, where=f"{subject.path.name}: data.pairs")
    labels = subject.train_labels[subset.rows]
    images = stimuli.train[labels]
    fmri = subject.train_fmri[subset.rows]
    n_val, subset.val_rule = validation_size(len(images), cfg.val_fraction, cfg.val_min)
    val, train, subset.val_stimuli = split_by_stimulus(labels, n_val, seed, val_stimuli)
    subset.val_rows = len(val)
    if len(val) != n_val:
        subset.val_rule += f"; {len(val)} rows: whole stimuli ({len(subset.val_stimuli)})"
    t = lambda a: torch.as_tensor(a).to(device)                                       # noqa: E731
    return PairedData(
        train_images=t(_chw(images[train])), train_fmri=t(fmri[train]),
        val_images=t(_chw(images[val])), val_fmri=t(fmri[val]),
        test_images=t(_chw(stimuli.test)), test_fmri=t(subject.test_avg), test_trials=t(subject.test_trials),
        noise_ceiling=t(subject.noise_ceiling), snr=t(subject.snr),
        files=[stim_path, subject.path], subset=subset, train_stimuli=labels[train], val_stimuli=labels[val],
    )


def split_by_stimulus(labels: np.ndarray, n_val: int, seed: int, val_stimuli: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(validation rows, training rows, validation stimuli), both row lists in one seeded shuffle's order: the
    validation split is every row whose stimulus is among those of the shuffle's first `n_val` rows (or `val_stimuli`),
    so no stimulus falls on both sides; with one row per stimulus it is those `n_val` rows."""
    order = np.random.default_rng(seed).permutation(len(labels))
    if val_stimuli is None:
        val_stimuli = np.unique(labels[order[:n_val]])
    held = np.isin(labels[order], val_stimuli)
    return order[held], order[~held], np.asarray(val_stimuli)


def load_unpaired_images(root: Path, cfg: DataConfig, modality: str, device="cpu") -> torch.Tensor:
    """The unpaired pool as uint8 (N, C, R, R) of the modality (depth from the configured MiDaS folder), the classes
    of `data.exclude_classes` left out."""
    depth = layout.unpaired_depth_dir(root, cfg.depth_source) if modality != "rgb" else None
    pool = imagenet.load_unpaired(layout.unpaired_image_dir(root), depth, cfg.resolution, cfg.max_unpaired,
                                  exclude=imagenet.exclusion_classes(cfg.exclude_classes))
    if modality == "depth":
        pool = pool[..., 3:]
    return _chw(pool).to(device)


def unpaired_pool(root: Path, cfg: DataConfig) -> tuple[list[Path], dict]:
    """(the unpaired pool's image files, its record for metrics.json): how many images and classes
    `data.exclude_classes` removed, and how many GOD test synsets (and their images) the pool still holds."""
    image_root = layout.unpaired_image_dir(root)
    files, _, removed = imagenet.pool_files(image_root, None, cfg.max_unpaired,
                                            imagenet.exclusion_classes(cfg.exclude_classes))
    god = {c for c, _ in imagenet.god_test_list()}
    held = [imagenet.class_of(p, image_root) for p in files]
    held_god = [c for c in held if c in god]
    record = {"root": str(Path(image_root).resolve()), "images": len(files), "classes": len(set(held)),
              "exclude_classes": cfg.exclude_classes or "none", **removed,
              "god_test_classes_held": len(set(held_god)), "god_test_images_held": len(held_god)}
    return files, record


def channel_norms(images_uint8: torch.Tensor) -> torch.Tensor:
    """Per-channel mean absolute value of [0, 1] training images (the image loss's L1 scale factors)."""
    return as_float(images_uint8).mean(dim=(0, 2, 3)).clamp_min(1e-6)


def unpaired_fmri_batch(trials: torch.Tensor, batch: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Image-less fMRI samples: each averages a random subset (`fraction` of the repeats) of one test image."""
    n, r, _ = trials.shape
    which = torch.randint(0, n, (batch,), generator=gen)
    k = max(1, int(r * fraction))
    if k == r:
        return trials[which.to(trials.device)].mean(1)
    picks = torch.argsort(torch.rand(batch, r, generator=gen), dim=1)[:, :k]
    sel = trials[which.to(trials.device).unsqueeze(1), picks.to(trials.device)]       # (B, k, V)
    return sel.mean(1)

