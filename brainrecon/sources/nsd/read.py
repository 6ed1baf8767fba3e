"""Readers for the NSD files convert-nsd uses; each bad or missing file is one DataError naming it and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrecon.data.nifti import read_nifti
from brainrecon.errors import DataError
from brainrecon.sources.nsd import files


def fetch_hint(subject: int, sessions: str = "") -> str:
    extra = f" --sessions {sessions}" if sessions else ""
    return f"fetch it with `brainrecon fetch-data --only nsd --subjects {subject}{extra}` or point --nsd-dir at a copy"


def require(path: Path, subject: int, sessions: str = "") -> Path:
    if not path.is_file():
        raise DataError(f"{path}: not found; {fetch_hint(subject, sessions)}")
    return path


@dataclass
class Design:
    masterordering: np.ndarray
    """(n_trials,) 1-based index into the subject's image list, trial by trial."""
    subjectim: np.ndarray
    """(8, 10000) 73k ids (1-based) of each subject's images."""
    sharedix: np.ndarray
    """(1000,) 73k ids of the shared images (the standard test set)."""

    def trial_ids(self, subject: int) -> np.ndarray:
        """73k id (1-based) of every trial of the subject, sessions in order."""
        return self.subjectim[subject - 1][self.masterordering - 1]


def read_expdesign(path: Path, subject: int) -> Design:
    from scipy.io import loadmat
    require(path, subject)
    try:
        mat = loadmat(path, variable_names=["masterordering", "subjectim", "sharedix"])
    except (ValueError, OSError, NotImplementedError, TypeError) as e:
        raise DataError(f"{path}: not a readable MATLAB v5 file ({e}); fetch it again") from None
    for key in ("masterordering", "subjectim", "sharedix"):
        if key not in mat:
            raise DataError(f"{path}: variable {key!r} missing; this is not NSD's nsd_expdesign.mat")
    order = np.asarray(mat["masterordering"]).astype(np.int64).ravel()
    subjectim = np.asarray(mat["subjectim"]).astype(np.int64)
    shared = np.asarray(mat["sharedix"]).astype(np.int64).ravel()
    if subjectim.ndim != 2 or subjectim.shape[0] < subject:
        raise DataError(f"{path}: subjectim expected (8, n_images), found {subjectim.shape}")
    n_images = subjectim.shape[1]
    checks = (("masterordering", order, 1, n_images), ("subjectim", subjectim, 1, files.N_STIMULI),
              ("sharedix", shared, 1, files.N_STIMULI))
    for key, a, lo, hi in checks:
        bad = (a < lo) | (a > hi)
        if bad.any():
            raise DataError(f"{path}: {key} has {int(bad.sum())} values outside {lo}..{hi} (first "
                            f"{int(a[bad].ravel()[0])}); the file is damaged or not NSD's: fetch it again")
    return Design(masterordering=order, subjectim=subjectim, sharedix=shared)


def read_volume(path: Path, subject: int, what: str, optional: bool = False) -> np.ndarray | None:
    """A NIfTI volume in its own (X, Y, Z) order; None for an absent optional file."""
    if not path.is_file():
        if optional:
            return None
        require(path, subject)
    return read_nifti(path, str(path), what, fix="fetch it again")


def read_ctab(path: Path) -> dict[str, int]:
    """A FreeSurfer colour table: `index name [r g b a]` per line -> {name: index}."""
    names: dict[str, int] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            names[parts[1]] = int(parts[0])
        except (ValueError, IndexError):
            raise DataError(f"{path}: line {n} is not `index name ...` (found {line.strip()!r})") from None
    return names


class BetaSession:
    """One session's betas file, opened and checked against the mask; rows read in blocks over the mask's box."""

    def __init__(self, path: Path, subject: int, session: int, mask_xyz: np.ndarray):
        import h5py
        require(path, subject, str(session))
        self.path = path
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 file ({e}); fetch it again") from None
        if "betas" not in self.h5:
            raise DataError(f"{path}: dataset 'betas' missing (found {', '.join(self.h5) or 'none'}); this is not an "
                            "NSD betas file")
        ds = self.h5["betas"]
        expected = mask_xyz.shape[::-1]
        if ds.ndim != 4 or ds.shape[1:] != expected:
            hint = " (it is the mask's own order: a volume written without reversing the axes)" \
                if ds.ndim == 4 and ds.shape[1:] == mask_xyz.shape and mask_xyz.shape != expected else ""
            raise DataError(f"{path}: betas have shape {ds.shape}, expected (trials, Z, Y, X) = (trials, "
                            f"{', '.join(map(str, expected))}), the reverse of the nsdgeneral mask's (X, Y, Z) "
                            f"{mask_xyz.shape}{hint}; use the betas and masks of the same subject and resolution")
        if ds.dtype != np.int16:
            raise DataError(f"{path}: betas stored as {ds.dtype}, expected int16 (percent signal change x 300)")
        self.ds = ds
        x, y, z = np.nonzero(mask_xyz)  # voxel order: C order over the NIfTI (X, Y, Z) volume
        self.box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in (z, y, x))
        self.index = (z - self.box[0].start, y - self.box[1].start, x - self.box[2].start)

    def read(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, V) int16 betas of the masked voxels."""
        block = self.ds[start:stop, self.box[0], self.box[1], self.box[2]]
        return block[:, self.index[0], self.index[1], self.index[2]]

    def close(self) -> None:
        self.h5.close()


class Brick:
    """The stimulus brick: `imgBrick` (73000, 425, 425, 3) uint8, row k-1 = 73k id k."""

    def __init__(self, path: Path, subject: int, max_id: int):
        import h5py
        require(path, subject)
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 file ({e}); fetch it again") from None
        if "imgBrick" not in self.h5:
            raise DataError(f"{path}: dataset 'imgBrick' missing; this is not nsd_stimuli.hdf5")
        ds = self.h5["imgBrick"]
        if ds.ndim != 4 or ds.shape[3] != 3 or ds.dtype != np.uint8:
            raise DataError(f"{path}: imgBrick is {ds.dtype} {ds.shape}, expected uint8 (73000, 425, 425, 3)")
        if ds.shape[0] < max_id:
            raise DataError(f"{path}: imgBrick has {ds.shape[0]} images but the design needs 73k id {max_id}; "
                            "fetch the file again")
        self.path, self.ds = path, ds

    def image(self, nsd_id: int) -> np.ndarray:
        return self.ds[nsd_id - 1]

    def close(self) -> None:
        self.h5.close()
