"""What the frozen encoder gets wrong on pairs it never trained on: its residuals and its per-voxel correlation on the
decoder's training rows whose stimuli the encoder held out for its own validation (its run's pairs.json).

Two decoder switches read them, both off in the paper presets (few-pairs study, docs/results.md):
`loss.ed_noise_from=residual` (the ED cycle's pseudo-fMRI get noise of the held-out residuals' per-voxel SD) and
`loss.de_voxel_weights=encoder_r` (the DE cycle weights each voxel by the encoder's held-out correlation, floored at
zero, instead of the release's SNR).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainrecon.data.pair_subset import listing_name
from brainrecon.data.transforms import as_float
from brainrecon.errors import UserError

MIN_ROWS = 3   # fewer held-out rows give no per-voxel SD or correlation worth the name


@dataclass
class HeldOut:
    residuals: torch.Tensor   # (n, V) measured fMRI - E(image) on the held-out rows
    r: torch.Tensor           # (V,) per-voxel Pearson r between E(image) and the measured fMRI on those rows
    n_rows: int

    def residual_sd(self) -> torch.Tensor:
        """(V,) the residuals' per-voxel SD (unbiased)."""
        return self.residuals.std(0)

    def accuracy_weights(self) -> torch.Tensor:
        """(V,) r floored at zero, over its mean: a voxel the encoder cannot predict carries no weight."""
        w = self.r.clamp_min(0)
        if float(w.sum()) <= 0:
            raise UserError(f"loss.de_voxel_weights=encoder_r: the encoder predicts no voxel above zero on its "
                            f"{self.n_rows} held-out rows; use loss.de_voxel_weights=snr")
        return w / w.mean()


def heldout_rows(encoder_run: Path, train_stimuli: np.ndarray, subject: int | None = None) -> np.ndarray:
    """The decoder's training rows (their stimuli `train_stimuli`) whose stimulus is in the encoder run's validation
    split (pairs.json; a group run's pairs_subject<N>.json for `subject`); refused in one line when the run lists
    none or too few of them."""
    listing = Path(encoder_run) / listing_name()
    if not listing.exists() and subject is not None:
        listing = Path(encoder_run) / listing_name(subject)
    if not listing.exists():
        raise UserError(f"{listing}: missing; the held-out switches need an encoder run that lists its validation "
                        "stimuli (train it with this brainrecon, data.val_fraction > 0)")
    held = json.loads(listing.read_text()).get("validation_stimuli", [])
    rows = np.flatnonzero(np.isin(np.asarray(train_stimuli), np.asarray(held, dtype=np.int64)))
    if len(rows) < MIN_ROWS:
        raise UserError(f"{encoder_run}: the encoder held out {len(rows)} of this decoder's training stimuli (the "
                        f"held-out switches need {MIN_ROWS}); train the encoder on the same pairs with a validation "
                        "split (data.val_fraction > 0)")
    return rows


def pearson_per_voxel(pred: torch.Tensor, fmri: torch.Tensor) -> torch.Tensor:
    p, f = pred - pred.mean(0), fmri - fmri.mean(0)
    return (p * f).sum(0) / (p.norm(dim=0) * f.norm(dim=0)).clamp_min(1e-12)


@torch.no_grad()
def measure(encoder_fn, encoder_run: Path, images: torch.Tensor, fmri: torch.Tensor, train_stimuli: np.ndarray,
            subject: int | None = None, chunk: int = 256) -> HeldOut:
    """The encoder (`encoder_fn`: float images -> voxels) on the held-out rows of (uint8 `images`, `fmri`)."""
    rows = torch.as_tensor(heldout_rows(encoder_run, train_stimuli, subject), device=fmri.device)
    pred = torch.cat([encoder_fn(as_float(images[rows[i:i + chunk]])).float()
                      for i in range(0, len(rows), chunk)])
    target = fmri[rows].float()
    return HeldOut(target - pred, pearson_per_voxel(pred, target), len(rows))
