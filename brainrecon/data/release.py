"""Readers and writers for the release files, with their schema written down once.

images_<res>.npz / rgbd_<res>_from_224_large_png_uint8.npz: `train_images` (1200, R, R, C), `test_images` (50, R, R, C),
    C = 3 (RGB) or 4 (RGB + MiDaS depth); floats in [0, 1] (uint8 accepted).
sbj_<N>.npz: positional arrays + one boolean mask per ROI over the V_all voxel axis:
    arr_0 train fMRI (1200, V_all)   arr_3 train labels (1200,) -> row of train_images
    arr_1 test single trials (T, V_all)  arr_4 their labels (T,) -> row of test_images (sorted unique order)
    arr_2 test fMRI averaged over repeats (50, V_all)   arr_5 noise ceiling (V_all,)   arr_6 SNR (V_all,)
Every problem is a DataError naming the file, the key, expected vs found, and the fix.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import brainrecon.data.layout as layout
from brainrecon.atomic import write_atomic
from brainrecon.config import ROIS
from brainrecon.errors import DataError

STIMULUS_KEYS = ("train_images", "test_images")
FMRI_KEYS = {
    "arr_0": "train fMRI (n_train, V_all)",
    "arr_1": "test single-trial fMRI (n_trials, V_all)",
    "arr_2": "test fMRI averaged over repeats (n_test, V_all)",
    "arr_3": "train labels (n_train,)",
    "arr_4": "test labels (n_trials,)",
    "arr_5": "voxel noise ceiling (V_all,)",
    "arr_6": "voxel SNR (V_all,)",
}
FETCH_HINT = {
    "stimuli": "run `brainrecon fetch-data --only stimuli` (or `brainrecon simulate --out DIR` and pass "
               "--data-dir DIR)",
    "rgbd": "make it from the stimuli with MiDaS (MIT): `brainrecon fetch-data --only midas --data-dir {root}` then "
            "`brainrecon make-depth --rgbd-npz {root}/images_{res}.npz --out {root} --data-dir {root}`; or download "
            "the authors' file (academic, non-commercial licence): `brainrecon fetch-data --only rgbd --data-dir "
            "{root}`",
    "fmri": "run `brainrecon fetch-data --only fmri --subjects N` (or `brainrecon simulate --out DIR --subject N`)",
}


@dataclass
class Stimuli:
    train: np.ndarray
    """(n_train, R, R, C) uint8."""
    test: np.ndarray
    """(n_test, R, R, C) uint8."""


@dataclass
class Subject:
    train_fmri: np.ndarray
    """(n_train, V) float32, one presentation per row."""
    train_labels: np.ndarray
    """(n_train,) int64 -> stimulus row."""
    test_trials: np.ndarray
    """(n_test, R, V) float32: single trials grouped by image, images in sorted-label order."""
    test_avg: np.ndarray
    """(n_test, V) float32."""
    noise_ceiling: np.ndarray
    snr: np.ndarray
    roi: str
    path: Path

    @property
    def n_voxels(self) -> int:
        return self.train_fmri.shape[1]


def _hint(hint: str, path: Path) -> str:
    """The fix for a missing or bad file, with the data folder (and the resolution) filled in."""
    res = path.name.split("_")[1] if path.name.startswith("rgbd_") else "112"
    return FETCH_HINT[hint].format(root=path.parent, res=res)


def _open_npz(path: Path, hint: str):
    if not path.exists():
        raise DataError(f"{path}: file not found; {_hint(hint, path)}")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable npz ({e}); delete it and {_hint(hint, path)}") from None


def _get(npz, path: Path, key: str, hint: str) -> np.ndarray:
    if key not in npz.files:
        raise DataError(f"{path}: key {key!r} missing (found {', '.join(npz.files) or 'none'}); "
                        f"the file is not in the release format; {_hint(hint, path)}")
    try:
        return npz[key]
    except ValueError as e:
        raise DataError(f"{path}: key {key!r} cannot be read ({e}); {_hint(hint, path)}") from None


def first_position(bad: np.ndarray) -> str:
    """The index of the first True of `bad`, as [i, j, ...]."""
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)) + "]"


def check_finite(a: np.ndarray, path: Path, key: str, what: str, fix: str) -> None:
    """Refuse an array with NaN or infinite values: one line naming the file, the key, how many, where the first is."""
    if not np.issubdtype(a.dtype, np.floating):
        return
    if (found := non_finite(a)) is not None:
        raise DataError(f"{path}: key {key!r} ({what}) {found}; {fix}")


def non_finite(a: np.ndarray) -> str | None:
    """How many NaN and infinite values `a` holds and where the first is, in words; None when every value is finite."""
    bad = ~np.isfinite(a)
    n = int(bad.sum())
    if not n:
        return None
    n_nan = int(np.isnan(a).sum())
    return f"has {n} non-finite value{'s' * (n > 1)} ({n_nan} NaN, {n - n_nan} inf), the first at {first_position(bad)}"


def _as_uint8_images(a: np.ndarray, path: Path, key: str, channels: tuple[int, ...]) -> np.ndarray:
    if a.ndim != 4 or a.shape[1] != a.shape[2] or a.shape[3] not in channels:
        raise DataError(f"{path}: key {key!r} expected shape (N, R, R, C) with C in {channels}, found {a.shape}")
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{path}: key {key!r} expected floats in [0, 1] or uint8, found dtype {a.dtype}")
    fix = "images and depth must be finite and in [0, 1]: re-create the file (brainrecon make-depth, convert-god or " \
          "simulate) or fetch it again"
    check_finite(a, path, key, "images (N, R, R, C), C = R, G, B[, depth]", fix)
    outside = (a < -1e-3) | (a > 1 + 1e-3)
    if outside.any():
        raise DataError(f"{path}: key {key!r} has {int(outside.sum())} values outside [0, 1] (found "
                        f"[{float(a.min()):.3g}, {float(a.max()):.3g}]), the first at {first_position(outside)}; {fix}")
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def load_stimuli(root: Path, modality: str, resolution: int = 112) -> Stimuli:
    """Stimulus images of a modality as uint8 (N, R, R, C): rgb from images_<res>.npz, depth/rgbd from the rgbd file."""
    path = layout.stimuli_file(root, resolution) if modality == "rgb" else layout.rgbd_file(root, resolution)
    hint = "stimuli" if modality == "rgb" else "rgbd"
    if not path.exists():
        _check_other_resolutions(root, modality, resolution, path)
        others = sorted(p.name for p in root.glob(f"rgbd_{resolution}_from_*_png_uint8.npz")) if hint == "rgbd" else []
        if others:
            raise DataError(f"{path}: not found; {root} holds {', '.join(others)}, made with another MiDaS model or "
                            f"source size, which training does not read (it reads the release's recipe, MiDaS large "
                            f"at 224 px): `brainrecon make-depth --rgbd-npz {root}/images_{resolution}.npz --out "
                            f"{root} --data-dir {root}`")
    channels = (3,) if modality == "rgb" else (4,)
    with _open_npz(path, hint) as npz:
        train = _as_uint8_images(_get(npz, path, "train_images", hint), path, "train_images", channels)
        test = _as_uint8_images(_get(npz, path, "test_images", hint), path, "test_images", channels)
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"{path}: train_images {train.shape[1:]} and test_images {test.shape[1:]} differ in size")
    if train.shape[1] != resolution:
        side = train.shape[1]
        named = (layout.stimuli_file if modality == "rgb" else layout.rgbd_file)(root, side).name
        raise DataError(f"{path}: holds {side} px images, not the {resolution} px its name says; write the file "
                        f"again, or rename it {named} and run at {side} px (`--set data.resolution={side}`)")
    if modality == "depth":
        train, test = train[..., 3:], test[..., 3:]
    return Stimuli(train=train, test=test)


def _check_other_resolutions(root: Path, modality: str, resolution: int, path: Path) -> None:
    """A config made for other data (e.g. the 64 px demo preset on 112 px files) gets the fix that helps."""
    name = layout.stimuli_file if modality == "rgb" else layout.rgbd_file
    found = sorted(r for r in range(16, 1025, 8) if name(root, r).exists())
    if found:
        have = ", ".join(f"{r} px ({name(root, r).name})" for r in found)
        sizes = _preset_sizes()
        mine = f", the {' and '.join(sizes[resolution])} preset's size" if resolution in sizes else ""
        fit = next((r for r in reversed(found) if r in sizes), None)
        use = (f"--config {sizes[fit][0]} (the preset made for {fit} px), or keep this config with "
               if fit is not None else "")
        raise DataError(f"{path}: not found; this run is configured for {resolution} px stimuli "
                        f"(data.resolution={resolution}{mine}) but {root} holds {have}: for these data use {use}"
                        f"`--set data.resolution={found[-1]}`; or make {resolution} px data with `brainrecon simulate "
                        f"--resolution {resolution} --out DIR`")


def _preset_sizes() -> dict[int, list[str]]:
    """{stimulus side: the presets made for it}: paper (the defaults) and each full preset that sets data.resolution."""
    from brainrecon.config import OVERLAY_KEY, STAGES, DataConfig, preset_file, preset_names, read_yaml
    sizes: dict[int, list[str]] = {DataConfig().resolution: ["paper"]}
    for stage in STAGES:
        for preset in preset_names(stage):
            values = read_yaml(preset_file(stage, preset))
            side = (values.get("data") or {}).get("resolution")
            if side and not values.get(OVERLAY_KEY) and preset not in sizes.setdefault(int(side), []):
                sizes[int(side)].append(preset)
    return sizes


def load_subject(root: Path, subject: int, roi: str = "VC") -> Subject:
    """Read sbj_<N>.npz, check every relation between its arrays, select the ROI and group test repeats by image."""
    path = layout.subject_file(root, subject)
    with _open_npz(path, "fmri") as npz:
        arrays = {k: _get(npz, path, k, "fmri") for k in FMRI_KEYS}
        if roi not in ROIS:
            raise DataError(f"{path}: unknown ROI {roi!r}; choose one of {', '.join(ROIS)}")
        mask = _get(npz, path, roi, "fmri")
    v_all = arrays["arr_0"].shape[-1] if arrays["arr_0"].ndim == 2 else None
    for key, what in FMRI_KEYS.items():
        a = arrays[key]
        expected_ndim = 2 if key in ("arr_0", "arr_1", "arr_2") else 1
        if a.ndim != expected_ndim:
            raise DataError(f"{path}: key {key!r} ({what}) expected {expected_ndim}-D, found shape {a.shape}")
        if key in ("arr_0", "arr_1", "arr_2", "arr_5", "arr_6"):
            if a.shape[-1] != v_all:
                raise DataError(f"{path}: key {key!r} ({what}) has {a.shape[-1]} voxels but arr_0 has {v_all}; "
                                "voxel counts must agree; re-download or re-simulate the file")
            if not np.issubdtype(a.dtype, np.floating):
                raise DataError(f"{path}: key {key!r} ({what}) expected floats, found dtype {a.dtype}")
            if key in ("arr_0", "arr_1", "arr_2"):
                check_finite(a, path, key, what, "repair that value (or drop the trial), or re-create the file with "
                             "brainrecon convert-god / simulate")
            else:  # a constant voxel has no defined ceiling or SNR (0/0): NaN there means 'no signal', read as 0
                check_finite(np.nan_to_num(a, nan=0.0), path, key, what, "a ceiling or SNR may be NaN (read as 0, "
                             "no signal) but never infinite; re-create the file")
        elif not np.issubdtype(a.dtype, np.integer) and not (np.issubdtype(a.dtype, np.floating)
                                                               and np.all(np.mod(a, 1) == 0)):
            raise DataError(f"{path}: key {key!r} ({what}) expected integer labels, found dtype {a.dtype}")
    if mask.dtype != bool or mask.shape != (v_all,):
        raise DataError(f"{path}: ROI mask {roi!r} expected bool ({v_all},), found {mask.dtype} {mask.shape}")
    if not mask.any():
        raise DataError(f"{path}: ROI mask {roi!r} selects no voxels; choose another --roi")
    train_labels = arrays["arr_3"].astype(np.int64)
    test_labels = arrays["arr_4"].astype(np.int64)
    if len(train_labels) != len(arrays["arr_0"]):
        raise DataError(f"{path}: key 'arr_3' has {len(train_labels)} labels but arr_0 has {len(arrays['arr_0'])} rows")
    if len(test_labels) != len(arrays["arr_1"]):
        raise DataError(f"{path}: key 'arr_4' has {len(test_labels)} labels but arr_1 has {len(arrays['arr_1'])} rows")
    n_test = len(arrays["arr_2"])
    unique, counts = np.unique(test_labels, return_counts=True)
    if len(unique) != n_test or unique.min() < 0 or unique.max() >= n_test:
        raise DataError(f"{path}: key 'arr_4' expected labels 0..{n_test - 1} (one per arr_2 row), found "
                        f"{len(unique)} distinct labels in [{unique.min()}, {unique.max()}]")
    if counts.min() != counts.max():
        raise DataError(f"{path}: key 'arr_4' expected the same number of repeats per test image, found "
                        f"{counts.min()}..{counts.max()}")
    order = np.argsort(test_labels, kind="stable")
    trials = arrays["arr_1"][order][:, mask].astype(np.float32).reshape(n_test, counts[0], int(mask.sum()))
    return Subject(
        train_fmri=arrays["arr_0"][:, mask].astype(np.float32),
        train_labels=train_labels,
        test_trials=trials,
        test_avg=arrays["arr_2"][:, mask].astype(np.float32),
        noise_ceiling=np.nan_to_num(arrays["arr_5"][mask], nan=0.0).astype(np.float32),
        snr=np.nan_to_num(arrays["arr_6"][mask], nan=0.0).astype(np.float32),
        roi=roi,
        path=path,
    )


def check_pairing(subject: Subject, stimuli: Stimuli, stimuli_path: Path) -> None:
    """Labels must index existing stimuli: train labels < n_train images, one test image per arr_2 row."""
    lo, hi = int(subject.train_labels.min()), int(subject.train_labels.max())
    if lo < 0 or hi >= len(stimuli.train):
        raise DataError(f"{subject.path}: key 'arr_3' expected labels in 0..{len(stimuli.train) - 1} "
                        f"(rows of {stimuli_path.name} train_images), found [{lo}, {hi}]")
    if len(subject.test_avg) != len(stimuli.test):
        raise DataError(f"{subject.path}: key 'arr_2' has {len(subject.test_avg)} rows but {stimuli_path.name} "
                        f"test_images has {len(stimuli.test)}; use matching files")


def noise_ceiling_from_repeats(trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From (n_images, n_repeats, V) single trials: the ceiling on correlating with the repeat average, and SNR.

    noise variance = mean over images of the across-repeat variance; signal variance = variance of the image means
    minus noise/R (floored at 0). ceiling = sqrt(signal / (signal + noise/R)); SNR = signal / noise (single trial).
    """
    n_rep = trials.shape[1]
    noise_var = trials.var(axis=1, ddof=1).mean(0)
    signal_var = np.maximum(trials.mean(1).var(axis=0, ddof=1) - noise_var / n_rep, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ceiling = np.sqrt(signal_var / (signal_var + noise_var / n_rep))
        snr = signal_var / noise_var
    # a voxel constant across repeats and images has 0/0 here: no measurable signal, so ceiling and SNR 0 (on purpose);
    # one with signal but no noise across repeats (a noise-free voxel) has ceiling 1 and an SNR capped at 1e6
    ceiling = np.where(signal_var + noise_var > 0, np.nan_to_num(ceiling, nan=1.0), 0.0)
    snr = np.where(noise_var > 0, snr, np.where(signal_var > 0, 1e6, 0.0))
    return ceiling.astype(np.float32), snr.astype(np.float32)


def stimuli_writer(train: np.ndarray, test: np.ndarray, as_uint8: bool = False) -> Callable[[Path], None]:
    """The writer (for atomic.write_atomic / write_all_atomic) of a stimulus npz from uint8 images: floats in [0, 1]
    as the release stores them (always finite and in range), or uint8 as they are (`as_uint8`: a quarter of the size;
    the readers take both)."""
    if train.dtype != np.uint8 or test.dtype != np.uint8:
        raise ValueError("a stimulus file is written from uint8 images")

    def writer(tmp: Path):
        with open(tmp, "wb") as f:
            if as_uint8:
                np.savez(f, train_images=train, test_images=test)
            else:
                np.savez(f, train_images=(train / np.float32(255)).astype(np.float32),
                         test_images=(test / np.float32(255)).astype(np.float32))
    return writer


def write_stimuli(path: Path, train: np.ndarray, test: np.ndarray) -> Path:
    """Write a stimulus npz as the release does: floats in [0, 1] (from uint8: always finite and in range)."""
    return write_atomic(path, stimuli_writer(train, test))


def subject_writer(path: Path, arrays: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> Callable[[Path], None]:
    """The writer of sbj_<N>.npz (arr_0..arr_6 + one boolean mask per ROI of config.ROIS), after checking that the
    reader would take its arrays (`path` names the file in the refusal)."""
    missing = set(FMRI_KEYS) - set(arrays)
    if missing or set(masks) != set(ROIS):
        raise ValueError(f"write_subject needs {sorted(FMRI_KEYS)} and masks {ROIS}")

    for key, what in FMRI_KEYS.items():  # never write a file that the reader would refuse
        check_finite(np.asarray(arrays[key]), path, key, what, "the arrays to write are not finite (a bug in the "
                     "converter or its input); nothing was written")

    def writer(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez(f, *[arrays[f"arr_{i}"] for i in range(7)], **masks)
    return writer


def write_subject(path: Path, arrays: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> Path:
    """Write sbj_<N>.npz in the release format (see `subject_writer`)."""
    return write_atomic(path, subject_writer(path, arrays, masks))
