"""One NIfTI reader: a 3-D volume in its own (X, Y, Z) order, or one DataError line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainrecon.errors import DataError


def read_nifti(path: Path, label: str, what: str = "", fix: str = "") -> np.ndarray:
    """The volume at `path` (a trailing axis of 1 dropped); `label` names it in errors, `what` says what it is, `fix`
    ends the line for a file that cannot be read."""
    import nibabel as nib
    try:
        vol = np.asarray(nib.load(path).dataobj)
    except Exception as e:  # nibabel raises several types for a damaged file
        raise DataError(f"{label}: not a readable NIfTI volume ({type(e).__name__}: {e})"
                        + (f"; {fix}" if fix else "")) from None
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise DataError(f"{label}: {what + ' ' if what else ''}expected a 3-D volume, found shape {vol.shape}")
    return vol
