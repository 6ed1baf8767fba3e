"""What the frozen encoder gets wrong on pairs it never trained on: its residuals and its per-voxel correlation on the
decoder's rows (training and validation) whose stimuli the encoder held out for its own validation (its run's
pairs.json).

Two decoder switches read them, both off in the paper presets (few-pairs study, docs/results.md):
`loss.ed_noise_from=residual` (the ED cycle's pseudo-fMRI get noise of the held-out residuals' per-voxel SD) and
`loss.de_voxel_weights=encoder_r` (the DE cycle weights each voxel by the encoder's held-out correlation, floored at
zero, instead of the release's SNR).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainrecon.correlation import pearson
from brainrecon.data.pair_subset import listing_name
from brainrecon.data.transforms import as_float
from brainrecon.errors import UserError

MIN_ROWS = 3        # fewer held-out rows give no per-voxel SD or correlation at all
NOISY_BELOW = 20    # below this many, said in a warning (a per-voxel r on 7 rows has a standard error near 0.4)


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


def heldout_rows(encoder_run: Path, stimuli: np.ndarray, subject: int | None = None) -> np.ndarray:
    """The decoder's rows (their stimuli `stimuli`) whose stimulus is in the encoder run's validation
    split (pairs.json; a group run's pairs_subject<N>.json for `subject`); refused in one line when the run lists
    none or too few of them."""
    listing = Path(encoder_run) / listing_name()
    if not listing.exists() and subject is not None:
        listing = Path(encoder_run) / listing_name(subject)
    if not listing.exists():
        raise UserError(f"{listing}: missing; the held-out switches need an encoder run that lists its validation "
                        "stimuli (train it with this brainrecon, data.val_fraction > 0)")
    held = json.loads(listing.read_text()).get("validation_stimuli", [])
    rows = np.flatnonzero(np.isin(np.asarray(stimuli), np.asarray(held, dtype=np.int64)))
    if len(rows) < MIN_ROWS:
        raise UserError(f"{encoder_run}: the encoder held out {len(rows)} of this decoder's stimuli (the held-out "
                        f"switches need {MIN_ROWS}); train the encoder on the same pairs and seed with a validation "
                        "split (data.val_fraction > 0)")
    return rows


@torch.no_grad()
def measure(encoder_fn, encoder_run: Path, data, subject: int | None = None, chunk: int = 256) -> HeldOut:
    """The encoder (`encoder_fn`: float images -> voxels) on the rows of `data` (a PairedData: its training and its
    validation rows; the decoder's validation split of the same seed and pairs is the encoder's own) whose stimuli
    the encoder held out."""
    parts = [(data.train_images, data.train_fmri, data.train_stimuli)]
    if data.val_stimuli is not None and len(data.val_stimuli):
        parts.append((data.val_images, data.val_fmri, data.val_stimuli))
    rows = heldout_rows(encoder_run, np.concatenate([p[2] for p in parts]), subject)
    preds, targets, start = [], [], 0
    for images, fmri, stimuli in parts:
        mine = torch.as_tensor(rows[(rows >= start) & (rows < start + len(stimuli))] - start, device=fmri.device)
        start += len(stimuli)
        preds += [encoder_fn(as_float(images[mine[i:i + chunk]])).float() for i in range(0, len(mine), chunk)]
        targets.append(fmri[mine].float())
    if len(rows) < NOISY_BELOW:
        warnings.warn(f"{encoder_run}: the held-out switches measure the encoder on {len(rows)} rows: per-voxel "
                      "estimates that noisy are recorded as such (encoder_heldout_rows in metrics.json)", stacklevel=2)
    pred, target = torch.cat(preds), torch.cat(targets)
    return HeldOut(target - pred, pearson(pred, target, dim=0), len(rows))
