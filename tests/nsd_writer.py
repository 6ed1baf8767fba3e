"""A mini NSD tree in the bucket's layout, written for the tests: the files convert-nsd reads, with known contents.

Subject 1, a small asymmetric volume (X, Y, Z) = (7, 9, 5), `per_session` trials in each of `sessions` sessions
(the design covers 40 sessions, as NSD's). Each image has a fixed voxel pattern; a trial is pattern + noise, with a
per-session, per-voxel offset and gain (which the per-session z-score must remove), stored as int16 x 300.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.io import savemat

from brainrecon.sources.nsd import files

SHAPE = (7, 9, 5)
PRF_NAMES = ["Unknown", "V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"]
FACE_NAMES = ["Unknown", "OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"]


@dataclass
class MiniNSD:
    root: Path
    subject: int
    per_session: int
    sessions: int
    betas: np.ndarray
    """(sessions * per_session, X, Y, Z) int16, as stored (h5 files hold the reverse axis order)."""
    trial_ids: np.ndarray
    """(sessions * per_session,) 73k ids of the written trials."""
    shared: np.ndarray
    nsdgeneral: np.ndarray
    prf: np.ndarray
    faces: np.ndarray
    brick: np.ndarray


def _nifti(path: Path, vol: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))


def write_mini_nsd(root: Path, sessions: int = 3, per_session: int = 60, seed: int = 0, signal: float = 1.0,
                   with_ncsnr: bool = False, side: int = 32, others: tuple[int, ...] = ()) -> MiniNSD:
    """Subject 1's files (and the design, the brick); `others`: more subjects, written by `_write_other`."""
    rng = np.random.default_rng(seed)
    subject, n_images, n_stim = 1, 120, 300
    brain = np.zeros(SHAPE, dtype=bool)
    brain[1:6, 1:8, 0:4] = True                       # asymmetric box inside the volume
    nsdgeneral = np.where(brain, 0, -1).astype(np.float32)
    inside = brain & (rng.random(SHAPE) < 0.6)
    inside[1, 1, 0] = True
    nsdgeneral[inside] = 1
    prf = np.where(brain, rng.integers(0, 8, SHAPE), -1).astype(np.float32)
    faces = np.where(brain, rng.integers(0, 6, SHAPE), -1).astype(np.float32)

    subjectim = np.stack([rng.choice(np.arange(1, n_stim + 1), n_images, replace=False) for _ in range(8)])
    shared = subjectim[subject - 1][:20].copy()       # the first 20 of the subject's list are 'shared'
    used = sessions * per_session
    shown = [i for i in range(1, 17) for _ in range(3)] + [17, 17]   # images 1..16 x3, image 17 x2, 18..20 never
    train = [i for i in range(21, n_images + 1) for _ in range(2)]
    order = np.asarray((shown + train * 4)[:used])
    order = order[rng.permutation(used)]
    masterordering = np.concatenate([order, rng.integers(1, n_images + 1, 40 * per_session - used)])
    trial_ids = subjectim[subject - 1][order - 1]

    patterns = rng.standard_normal((n_stim + 1,) + SHAPE)
    noise = rng.standard_normal((used,) + SHAPE)
    session_of = np.repeat(np.arange(sessions), per_session)
    offset = rng.normal(0, 2, (sessions,) + SHAPE)
    gain = rng.uniform(0.5, 2, (sessions,) + SHAPE)
    psc = (signal * patterns[trial_ids] + noise) * gain[session_of] + offset[session_of]
    betas = np.where(brain, np.rint(psc * 300), 0).astype(np.int16)

    for k, other in enumerate(others):         # NSD's layout: every subject's list starts with the shared images
        own = np.setdiff1d(np.arange(1, n_stim + 1), shared)
        subjectim[other - 1] = np.concatenate([shared, np.random.default_rng(seed + 100 + k).choice(
            own, n_images - len(shared), replace=False)])
    design = root / files.EXPDESIGN
    design.parent.mkdir(parents=True, exist_ok=True)
    savemat(design, {"masterordering": masterordering[None].astype(np.float64),
                     "subjectim": subjectim.astype(np.float64), "sharedix": shared[None].astype(np.float64)})
    _write_subject_files(root, subject, betas, sessions, per_session, nsdgeneral, prf, faces)
    if with_ncsnr:
        _nifti(root / files.ncsnr(subject), rng.uniform(0, 1, SHAPE).astype(np.float32))
    brick = rng.integers(0, 256, (n_stim, side, side, 3), dtype=np.uint8)
    path = root / files.STIMULI
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("imgBrick", data=brick)
    for k, other in enumerate(others):
        _write_other(root, other, subjectim[other - 1][order - 1], patterns, brain, nsdgeneral, prf, faces,
                     sessions, per_session, signal, np.random.default_rng(seed + 200 + k))
    return MiniNSD(root=root, subject=subject, per_session=per_session, sessions=sessions, betas=betas,
                   trial_ids=trial_ids, shared=shared, nsdgeneral=nsdgeneral, prf=prf, faces=faces, brick=brick)


def _write_other(root: Path, subject: int, trial_ids: np.ndarray, patterns: np.ndarray, brain: np.ndarray,
                 nsdgeneral: np.ndarray, prf: np.ndarray, faces: np.ndarray, sessions: int, per_session: int,
                 signal: float, rng: np.random.Generator) -> None:
    """Another subject on the same trial order (NSD's masterordering), its own images through its subjectim row:
    the same volume and ROIs as subject 1, its own noise, session offsets and gains."""
    used = sessions * per_session
    session_of = np.repeat(np.arange(sessions), per_session)
    offset = rng.normal(0, 2, (sessions,) + SHAPE)
    gain = rng.uniform(0.5, 2, (sessions,) + SHAPE)
    psc = (signal * patterns[trial_ids] + rng.standard_normal((used,) + SHAPE)) * gain[session_of] + offset[session_of]
    betas = np.where(brain, np.rint(psc * 300), 0).astype(np.int16)
    _write_subject_files(root, subject, betas, sessions, per_session, nsdgeneral, prf, faces)


def _write_subject_files(root: Path, subject: int, betas: np.ndarray, sessions: int, per_session: int,
                         nsdgeneral: np.ndarray, prf: np.ndarray, faces: np.ndarray) -> None:
    """A subject's betas (one HDF5 file per session), ROI volumes and their colour tables."""
    for s in range(sessions):
        path = root / files.betas(subject, s + 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:  # h5py sees (trials, Z, Y, X): the reverse of the NIfTI order
            f.create_dataset("betas", data=betas[s * per_session:(s + 1) * per_session].transpose(0, 3, 2, 1))
    _nifti(root / files.roi_volume(subject, "nsdgeneral"), nsdgeneral)
    _nifti(root / files.roi_volume(subject, "prf-visualrois"), prf)
    _nifti(root / files.roi_volume(subject, "floc-faces"), faces)
    for name, names in (("prf-visualrois", PRF_NAMES), ("floc-faces", FACE_NAMES)):
        path = root / files.ctab(subject, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i} {n} {i * 20} 0 0 0\n" for i, n in enumerate(names)))
