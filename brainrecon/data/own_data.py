"""A lab's own fMRI and stimuli -> the release files the trainers read: `write_subject`.

What it writes into `out` (docs/your-data.md shows a whole run):
    sbj_<N>.npz                         arr_0..arr_6 and one boolean mask per ROI (the schema in release.py)
    images_<res>.npz                    the training and test images, centre-cropped, resized, uint8
    rgbd_<res>_from_224_large_png_uint8.npz   with depth given: the images + depth as a 4th channel
    sbj_<N>_import.json                 provenance: what was given, what was computed, counts
Every input is checked (shapes, dtypes, finite values, counts that must agree) before anything is written, each
problem one DataError line naming the input; the files are then written together (temp files moved into place).
A stimulus file already in `out` with the same images is kept (several subjects who saw the same images share it);
with other images it is refused unless `overwrite`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import brainrecon.data.layout as layout
import brainrecon.data.own_checks as own_checks
import brainrecon.data.release as release
from brainrecon.atomic import write_all_atomic, write_text_atomic
from brainrecon.config import ROIS
from brainrecon.errors import DataError, UserError
from brainrecon.locks import hold_data
from brainrecon.version import version_string

SNR_CAP = 1e6
"""SNR of a voxel whose given ceiling is 1 (no noise), as release.noise_ceiling_from_repeats caps it."""


@dataclass
class SubjectInputs:
    """One subject's arrays as a lab has them (see `write_subject` for each)."""
    train_fmri: object
    train_images: object
    test_fmri: object
    test_images: object
    rois: dict | None = None
    train_image_index: object = None
    test_image_index: object = None
    noise_ceiling: object = None
    train_depth: object = None
    test_depth: object = None
    names: dict = field(default_factory=dict)
    """How messages name each input (default: the argument's name); import-arrays gives its flags and files."""

    def name(self, key: str) -> str:
        return self.names.get(key, {"overwrite": "overwrite=True"}.get(key, key))


def write_subject(out: str | Path, subject: int = 1, *, train_fmri, train_images, test_fmri, test_images,
                  rois: dict | None = None, train_image_index=None, test_image_index=None, noise_ceiling=None,
                  train_depth=None, test_depth=None, resolution: int = 112, overwrite: bool = False) -> dict:
    """Check a lab's arrays and write them into the data folder `out` as subject `subject` (sbj_<N>.npz and the
    stimulus file(s)); returns the provenance record also written to `out/sbj_<N>_import.json`.

    train_fmri: (trials, V) floats, one row per training presentation (z-scored betas per session recommended).
    train_images: one image per trial, or the unique images with `train_image_index` (trials,) giving each trial's
        row; an (N, H, W, 3) or grey (N, H, W) array, or a sequence of (H, W[, 3]) arrays of any size; uint8 or
        floats in [0, 1]. Centre-cropped to a square and resized (PIL bicubic) to `resolution`.
    test_fmri: (test images, repeats, V), or (trials, V) with `test_image_index` (trials,) giving each trial's test
        image; every test image needs the same number of repeats.
    test_images: the test images, in the order the index counts them.
    rois: {name: bool (V,)} with names from config.ROIS (V1 V2 V3 V4 FFA PPA LOC LVC HVC VC); VC, the trainers'
        default --roi, is every voxel when not given; other names not given are written empty (--roi refuses them).
    noise_ceiling: (V,) in [0, 1], the ceiling on correlating with the repeat average; default: computed from the
        test repeats (release.noise_ceiling_from_repeats, at least 2 repeats).
    train_depth, test_depth: optional depth maps (N, H, W), near = high (MiDaS' inverse depth), uint8 or [0, 1],
        one per image: adds the RGBD file that --modality depth / rgbd read.
    """
    inputs = SubjectInputs(train_fmri, train_images, test_fmri, test_images, rois, train_image_index,
                           test_image_index, noise_ceiling, train_depth, test_depth)
    keys = ("train_fmri", "train_images", "test_fmri", "test_images", "train_image_index", "test_image_index",
            "noise_ceiling", "train_depth", "test_depth")
    described = {k: _describe(getattr(inputs, k)) for k in keys if getattr(inputs, k) is not None}
    described["rois"] = {k: _describe(v) for k, v in (rois or {}).items()}
    return write_inputs(out, subject, inputs, resolution, overwrite,
                        {"made_by": "brainrecon.data.write_subject", "inputs": described})


def _describe(a) -> dict:
    if isinstance(a, np.ndarray):
        return {"shape": list(a.shape), "dtype": str(a.dtype)}
    return {"items": len(a), "type": type(a).__name__} if hasattr(a, "__len__") else {"type": type(a).__name__}


def write_inputs(out: str | Path, subject: int, inputs: SubjectInputs, resolution: int, overwrite: bool,
                 source: dict) -> dict:
    """`write_subject` with messages named by `inputs.names` and `source` heading the provenance record."""
    start = time.perf_counter()
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 1:
        raise UserError(f"{inputs.name('subject')} {subject!r}: give a whole number from 1 (names sbj_<N>.npz)")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 16 \
            or resolution % 8:
        raise UserError(f"{inputs.name('resolution')} {resolution!r} must be a multiple of 8, at least 16 (the "
                        "trainers' data.resolution: 112 for the paper configs, 64 for --config demo)")
    arrays, counts, notes = subject_arrays(inputs)
    masks, roi_record = own_checks.masks(inputs.rois, inputs.name("rois"), counts["voxels"], ROIS,
                                         {r: inputs.names[f"rois.{r}"] for r in ROIS if f"rois.{r}" in inputs.names})
    counts["voxels_per_roi"] = {r: int(m.sum()) for r, m in masks.items()}
    train = own_checks.images(inputs.train_images, inputs.name("train_images"), resolution)
    test = own_checks.images(inputs.test_images, inputs.name("test_images"), resolution)
    rgbd = None
    if inputs.train_depth is not None:
        train_d = own_checks.images(inputs.train_depth, inputs.name("train_depth"), resolution, depth=True)
        test_d = own_checks.images(inputs.test_depth, inputs.name("test_depth"), resolution, depth=True)
        rgbd = (np.concatenate([train, train_d], -1), np.concatenate([test, test_d], -1))

    out = Path(out)
    subject_path = layout.subject_file(out, subject)
    stimulus_files = [(layout.stimuli_file(out, resolution), "rgb", (train, test))]
    if rgbd is not None:
        stimulus_files.append((layout.rgbd_file(out, resolution), "rgbd", rgbd))
    with hold_data(out):
        if subject_path.exists() and not overwrite:
            raise DataError(f"{subject_path}: already exists; choose another subject number or folder, or overwrite "
                            f"it ({inputs.name('overwrite')})")
        writers = [(subject_path, release.subject_writer(subject_path, arrays, masks))]
        kept = []
        for path, modality, (a, b) in stimulus_files:
            if _same_stimuli(out, modality, resolution, path, a, b, overwrite, inputs.name("overwrite")):
                kept.append(path.name)
            else:
                writers.append((path, release.stimuli_writer(a, b, as_uint8=True)))
        write_all_atomic(writers)
        record = {
            **source,
            "brainrecon": version_string(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": {"fmri": subject_path.name, "stimuli": [p.name for p, _, _ in stimulus_files],
                        "stimuli_kept_as_they_were": kept, "provenance": _record_path(out, subject).name},
            "subject": int(subject), "resolution": int(resolution),
            "counts": {**counts, "train_images": len(train), "test_images": len(test),
                       "train_images_without_trials": int(len(train) - len(np.unique(arrays["arr_3"])))},
            "rois": roi_record,
            "images": f"centre-cropped to a square and resized to {resolution} px (PIL bicubic), stored as uint8",
            "depth": ("given: the 4th channel of " + stimulus_files[1][0].name + " (not MiDaS large at 224 px, "
                      "though the file has the name the trainers read)") if rgbd is not None else "not given",
            **notes,
            "seconds": round(time.perf_counter() - start, 2),
        }
        write_text_atomic(_record_path(out, subject), json.dumps(record, indent=2))
    return record


def _record_path(out: Path, subject: int) -> Path:
    return out / f"sbj_{subject}_import.json"


def subject_arrays(inputs: SubjectInputs) -> tuple[dict, dict, dict]:
    """The checked arrays arr_0..arr_6 of sbj_<N>.npz, the counts, and how the test trials and the ceiling were
    read. Cheap checks only (counts agree before any image is resized)."""
    n = inputs.name
    train = own_checks.fmri(inputs.train_fmri, n("train_fmri"), "training fMRI (trials, voxels)")
    n_trials, v = train.shape
    test = own_checks.fmri(inputs.test_fmri, n("test_fmri"), "test fMRI (test images, repeats, voxels) or "
                           "(trials, voxels)", ndim=(2, 3))
    if test.shape[-1] != v:
        raise DataError(f"{n('test_fmri')}: {test.shape[-1]} voxels (last axis of shape {test.shape}) but "
                        f"{n('train_fmri')} has {v}; both need the same voxels in the same order")
    n_test = _count(inputs.test_images, n("test_images"))
    if test.ndim == 3:
        if inputs.test_image_index is not None:
            raise DataError(f"{n('test_image_index')}: goes with a 2-D {n('test_fmri')} (trials, voxels); this one is "
                            f"3-D {test.shape} (test images, repeats, voxels), already grouped: leave the index out")
        if test.shape[0] != n_test:
            raise DataError(f"{n('test_fmri')}: {test.shape[0]} test images x {test.shape[1]} repeats but "
                            f"{n('test_images')} holds {n_test} images; give one image per first-axis row")
        n_rep = test.shape[1]
        trials, labels, grouped = test.reshape(-1, v), np.repeat(np.arange(n_test), n_rep), test
        layout_note = "given grouped (test images, repeats, voxels)"
    else:
        if inputs.test_image_index is None:
            raise DataError(f"{n('test_fmri')}: 2-D {test.shape} (trials, voxels) needs {n('test_image_index')} (the "
                            "test image of each trial), or give it shaped (test images, repeats, voxels)")
        labels = own_checks.index(inputs.test_image_index, n("test_image_index"), len(test), n_test, "test images")
        n_rep = own_checks.repeats(labels, n("test_image_index"), n_test)
        trials = test
        grouped = test[np.argsort(labels, kind="stable")].reshape(n_test, n_rep, v)
        layout_note = "given as trials with a test-image index, in presentation order"
    n_images = _count(inputs.train_images, n("train_images"))
    if inputs.train_image_index is None:
        if n_images != n_trials:
            raise DataError(f"{n('train_images')}: {n_images} images but {n('train_fmri')} has {n_trials} trials; give "
                            f"one image per trial, or the unique images with {n('train_image_index')}")
        train_labels = np.arange(n_trials)
    else:
        train_labels = own_checks.index(inputs.train_image_index, n("train_image_index"), n_trials, n_images,
                                        "training images")
    _check_depth_counts(inputs, n_images, n_test)
    ceiling, snr, ceiling_note = _ceiling(inputs, grouped, v)
    arrays = {"arr_0": train, "arr_1": trials, "arr_2": grouped.mean(1).astype(np.float32),
              "arr_3": train_labels.astype(np.int64), "arr_4": labels.astype(np.int64),
              "arr_5": ceiling, "arr_6": np.maximum(snr, 1e-3).astype(np.float32)}
    counts = {"voxels": int(v), "train_trials": int(n_trials), "test_trials": int(len(trials)),
              "repeats_per_test_image": int(n_rep)}
    scale = {"median_voxel_mean": float(np.median(train.mean(0))), "median_voxel_std": float(np.median(train.std(0)))}
    return arrays, counts, {"test_trials": layout_note, "noise_ceiling": ceiling_note, "train_fmri_scale": scale}


def _count(items, name: str) -> int:
    if items is None:
        raise DataError(f"{name}: missing")
    try:
        return len(items)
    except TypeError:
        raise DataError(f"{name}: expected an array or a sequence of images, found {type(items).__name__}") from None


def _check_depth_counts(inputs: SubjectInputs, n_images: int, n_test: int) -> None:
    n = inputs.name
    if (inputs.train_depth is None) != (inputs.test_depth is None):
        given, other = ("train_depth", "test_depth") if inputs.test_depth is None else ("test_depth", "train_depth")
        raise DataError(f"{n(given)}: given without {n(other)}; depth needs both (or neither)")
    if inputs.train_depth is None:
        return
    for key, count, images in (("train_depth", n_images, "train_images"), ("test_depth", n_test, "test_images")):
        found = _count(getattr(inputs, key), n(key))
        if found != count:
            raise DataError(f"{n(key)}: {found} depth maps but {n(images)} holds {count} images; give one per image")


def _ceiling(inputs: SubjectInputs, grouped: np.ndarray, v: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(ceiling, single-trial SNR, how they were made): given, or from the repeats."""
    n_rep = grouped.shape[1]
    if inputs.noise_ceiling is None:
        if n_rep < 2:
            raise DataError(f"{inputs.name('test_fmri')}: 1 repeat per test image; the noise ceiling is computed from "
                            f"at least 2 repeats: give {inputs.name('noise_ceiling')} (V,) in [0, 1]")
        ceiling, snr = release.noise_ceiling_from_repeats(grouped)
        return ceiling, snr, f"computed by release.noise_ceiling_from_repeats over the {n_rep} test repeats"
    name = inputs.name("noise_ceiling")
    c = own_checks.fmri(inputs.noise_ceiling, name, "noise ceiling (voxels,)", ndim=(1,))
    if len(c) != v:
        raise DataError(f"{name}: {len(c)} values but the fMRI has {v} voxels; give one per voxel")
    if c.min() < 0 or c.max() > 1:
        raise DataError(f"{name}: expected values in [0, 1] (a correlation ceiling), found [{c.min():.3g}, "
                        f"{c.max():.3g}]; a ceiling in percent: divide by 100")
    c64 = c.astype(np.float64)
    with np.errstate(divide="ignore"):
        snr = np.where(c64 < 1, c64 ** 2 / (n_rep * (1 - c64 ** 2)), SNR_CAP)
    return c, np.minimum(snr, SNR_CAP).astype(np.float32), (
        f"given; single-trial SNR = c^2 / ({n_rep} (1 - c^2)), the SNR whose {n_rep}-repeat average has ceiling c")


def _same_stimuli(out: Path, modality: str, resolution: int, path: Path, train: np.ndarray, test: np.ndarray,
                  overwrite: bool, flag: str) -> bool:
    """True when `path` already holds exactly these images (kept as it is); refuses other images unless overwrite."""
    if not path.exists() or overwrite:
        return False
    try:
        have = release.load_stimuli(out, modality, resolution)
    except DataError as e:
        raise DataError(f"{path}: already exists and cannot be read ({e}); remove it or overwrite it ({flag})") \
            from None
    if np.array_equal(have.train, train) and np.array_equal(have.test, test):
        return True
    raise DataError(f"{path}: already exists with other images ({len(have.train)} training, {len(have.test)} test): "
                    f"the subjects of one data folder share its images; write into another folder, or overwrite it "
                    f"({flag}) if no other subject there uses it")
