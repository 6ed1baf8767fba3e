"""convert-god: the public Generic Object Decoding data -> the release formats (sbj_<N>.npz, images_<res>.npz).

Input: one subject's preprocessed fMRI in bdpy's BData HDF5 (Kamitani lab, figshare article 7387130; the raw BIDS
data is OpenNeuro ds001246, CC0) and the stimulus photos (ImageNet images, sent by the lab on request), found by file
name anywhere under a folder.

What is done, in order (also written to `convert.json` beside the outputs):
1. Samples: DataType 1 (training) and 2 (perception test); imagery (3) is not used. A one-back repeat (a block
   showing the same image as the block just before it, in the same run) is dropped: it was the subjects' attention
   task, not a presentation of its own.
2. Voxels: the columns of `ROI_<roi>` (VC by default). Each voxel is z-scored within each run (mean 0, population
   std 1 over that run's kept samples; a constant voxel becomes 0).
3. Stimulus ids: ImageNet file nXXXXXXXX_Y is stored as the float XXXXXXXX.YYYYYY (Y zero-padded to six digits);
   they are matched as float64 to the nearest id of the image lists (training 1,200, test 50; GOD's csv format,
   `id,"file name"` per line), and a match farther than 1e-7 is refused. In float32 the ids collapse (1,200 training
   ids to about 150 values), so a float32 file is refused.
4. sbj_<N>.npz exactly as brainrecon.data.release describes it: train fMRI in file order with labels indexing the
   training list, the test single trials in presentation order with labels 0..49, their average per test image,
   noise ceiling and SNR from the test repeats by `release.noise_ceiling_from_repeats` (the function `simulate`
   uses), and boolean ROI masks over the kept voxels. Every test image must have the same number of repeats.
5. images_<res>.npz: each photo centre-cropped to a square, resized with bicubic anti-aliasing (PIL), floats in
   [0, 1], grey photos replicated to 3 channels, in list order.
Everything is read and checked before anything is written; every file is written atomically. The image lists (step 3)
are read and matched in `brainrecon.sources.god_lists`, the photos (step 5) found and resized in
`brainrecon.sources.photos`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrecon.atomic import write_text_atomic
from brainrecon.config import ROIS
from brainrecon.data import download, layout, release
from brainrecon.errors import DataError, UserError
from brainrecon.locks import hold_data
from brainrecon.sources import release_files
from brainrecon.sources.bdata import read_bdata
from brainrecon.sources.god_lists import ImageList, carried_lists, match_ids, read_image_list
from brainrecon.sources.photos import find_photos, load_photo

TRAIN, TEST, IMAGERY = 1, 2, 3


@dataclass
class ConvertOptions:
    subject: int
    roi: str = "VC"
    resolution: int = 112
    allow_missing: bool = False
    image_lists: tuple[Path, Path] | None = None
    """(training csv, test csv); None = the lists brainrecon carries."""


def _one_back_repeats(data_type: np.ndarray, run: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """True for a sample showing the same image as the sample just before it, in the same run and data type."""
    same = np.zeros(len(ids), dtype=bool)
    same[1:] = (ids[1:] == ids[:-1]) & (run[1:] == run[:-1]) & (data_type[1:] == data_type[:-1])
    return same


def zscore_within_runs(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each column z-scored within each group of rows (population std; a constant column becomes 0)."""
    out = np.empty_like(x, dtype=np.float64)
    for g in np.unique(groups):
        rows = groups == g
        block = x[rows]
        sd = block.std(0)
        out[rows] = (block - block.mean(0)) / np.where(sd > 0, sd, 1.0)
    return out


def lock_outputs(out: Path, paths: list[Path], h5: Path) -> None:
    """Record the written release files in the data folder's lock, so `fetch-data --verify` checks them like any
    fetched file (and fetch-data never downloads over them)."""
    entries = {e.name: e for e in release_files.entries()}
    lock = download.Lock(out)
    for p in paths:
        if p.name in entries:
            lock.record(entries[p.name], p, download.sha256(p), f"brainrecon convert-god from {Path(h5).name}")


def convert_god(h5: Path, images: Path, out: Path, opts: ConvertOptions, say=lambda s: None) -> dict:
    """Convert one subject; returns the provenance record also written to `out/convert.json`. Holds the output
    folder's data lock throughout: a second convert-god or fetch-data there stops at once, naming this one."""
    with hold_data(out):
        return _convert_god(Path(h5), Path(images), Path(out), opts, say)


@dataclass
class Samples:
    """One subject's kept perception samples (steps 1-3 of the module docstring), z-scored, with their labels."""
    train_fmri: np.ndarray
    train_labels: np.ndarray
    """Index into the training list of each training sample."""
    test_trials: np.ndarray
    test_labels: np.ndarray
    """Index into the test list of each test trial."""
    roi_cols: dict
    """ROI name -> boolean over the file's columns (voxels only)."""
    kept: np.ndarray
    """The columns of the chosen ROI."""
    dropped: dict
    label_key: str


@dataclass
class Photos:
    """The photo of every image kept (step 5), and which images of each list they are."""
    paths: dict
    keep_train: np.ndarray
    keep_test: np.ndarray


def _convert_god(h5: Path, images: Path, out: Path, opts: ConvertOptions, say) -> dict:
    """Read and check everything, then write: the steps of the module docstring, in order."""
    start = time.perf_counter()
    bd = open_subject(h5, opts.roi, say)
    train_list, test_list = (read_image_list(opts.image_lists[0]), read_image_list(opts.image_lists[1])) \
        if opts.image_lists else carried_lists()
    samples = read_samples(bd, h5, opts.roi, train_list, test_list, say)
    photos = pair_photos(samples, images, train_list, test_list, opts.allow_missing)
    grouped, counts, ceiling, snr = group_test_repeats(samples, photos, test_list, h5)
    train_images, test_images = load_images(photos, train_list, test_list, opts.resolution, say)

    arrays = {"arr_0": samples.train_fmri.astype(np.float32), "arr_1": samples.test_trials.astype(np.float32),
              "arr_2": grouped.mean(1).astype(np.float32), "arr_3": samples.train_labels.astype(np.int64),
              "arr_4": samples.test_labels.astype(np.int64), "arr_5": ceiling,
              "arr_6": np.maximum(snr, 1e-3).astype(np.float32)}
    masks = {name: cols[samples.kept] for name, cols in samples.roi_cols.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stim_path = release.write_stimuli(layout.stimuli_file(out, opts.resolution), train_images, test_images)
    subj_path = release.write_subject(layout.subject_file(out, opts.subject), arrays, masks)
    lock_outputs(out, [stim_path, subj_path], h5)
    record = provenance(h5, images, opts, samples, masks, len(photos.keep_test), int(counts[0]),
                        (train_list, test_list), (stim_path, subj_path))
    record["seconds"] = round(time.perf_counter() - start, 2)
    write_text_atomic(out / "convert.json", json.dumps(record, indent=2))
    return record


def open_subject(h5: Path, roi: str, say):
    """The BData file, after checking --roi and that the stimulus ids are float64."""
    if roi not in ROIS:
        raise UserError(f"--roi {roi!r} is not a ROI; choose one of {', '.join(ROIS)}")
    say(f"reading {h5}")
    bd = read_bdata(h5)
    if bd.dataset.dtype != np.float64:
        raise DataError(f"{h5}: the data are stored as {bd.dataset.dtype}, but stimulus ids need float64 (in "
                        "float32 the 1,200 training ids collapse to about 150 values); use the original float64 "
                        "file")
    return bd


def read_samples(bd, h5: Path, roi: str, train_list: ImageList, test_list: ImageList, say) -> Samples:
    """Steps 1-3: the perception samples without one-back repeats, the ROI's voxels z-scored within runs, and each
    sample's image matched to the lists."""
    data_type = bd.field("DataType")
    ids = bd.field("stimulus_id", "Label")
    run = bd.field("Run")
    bd.field("Block")  # a GOD file has it; its absence means another kind of file
    voxel_cols = bd.columns("VoxelData")
    roi_cols = {name: bd.columns(f"ROI_{name}") & voxel_cols for name in ROIS}
    kept = roi_cols[roi]
    if not kept.any():
        raise DataError(f"{h5}: ROI_{roi} selects no voxel; choose another --roi")

    perception = np.isin(data_type, (TRAIN, TEST))
    repeats = _one_back_repeats(data_type, run, ids) & perception
    keep = perception & ~repeats
    say(f"{int(keep.sum())} samples kept ({int((data_type == IMAGERY).sum())} imagery and {int(repeats.sum())} "
        "one-back repeats dropped)")
    voxels = zscore_within_runs(bd.dataset[keep][:, kept], np.stack([data_type[keep], run[keep]], 1) @ [1e6, 1])
    dt, sample_ids = data_type[keep], ids[keep]
    is_train, is_test = dt == TRAIN, dt == TEST
    if not is_train.any() or not is_test.any():
        raise DataError(f"{h5}: found {int(is_train.sum())} training and {int(is_test.sum())} test samples; a GOD "
                        "subject file has both (DataType 1 and 2)")
    train_labels = match_ids(sample_ids[is_train], train_list, Path(h5), "training")
    test_labels = match_ids(sample_ids[is_test], test_list, Path(h5), "test")
    dropped = {"imagery_samples": int((data_type == IMAGERY).sum()), "one_back_repeats": int(repeats.sum())}
    return Samples(train_fmri=voxels[is_train], train_labels=train_labels, test_trials=voxels[is_test],
                   test_labels=test_labels, roi_cols=roi_cols, kept=kept, dropped=dropped,
                   label_key="stimulus_id" if "stimulus_id" in bd.keys else "Label")


def pair_photos(samples: Samples, images: Path, train_list: ImageList, test_list: ImageList,
                allow_missing: bool) -> Photos:
    """Step 5's photos: each listed image's file; a missing one is refused, or with --allow-missing its samples are
    dropped and the labels re-indexed onto the kept images (updates `samples`)."""
    names = train_list.names + test_list.names
    photos = find_photos(images, names)
    missing_train = [i for i, n in enumerate(train_list.names) if n not in photos]
    missing_test = [i for i, n in enumerate(test_list.names) if n not in photos]
    n_missing = len(missing_train) + len(missing_test)
    if n_missing and not allow_missing:
        first = [f"{train_list.ids[i]:.6f} ({train_list.names[i]})" for i in missing_train] + \
                [f"{test_list.ids[i]:.6f} ({test_list.names[i]})" for i in missing_test]
        raise DataError(f"{images}: {n_missing} of {len(names)} listed photos not found (first: "
                        f"{', '.join(first[:10])}); add them, or pass --allow-missing to drop those pairs")
    samples.dropped["training_images_without_photo"] = [train_list.names[i] for i in missing_train]
    samples.dropped["test_images_without_photo"] = [test_list.names[i] for i in missing_test]
    keep_train = np.setdiff1d(np.arange(len(train_list.ids)), missing_train)
    keep_test = np.setdiff1d(np.arange(len(test_list.ids)), missing_test)
    train_rows = np.isin(samples.train_labels, keep_train)
    test_rows = np.isin(samples.test_labels, keep_test)
    samples.train_fmri = samples.train_fmri[train_rows]
    samples.train_labels = np.searchsorted(keep_train, samples.train_labels[train_rows])
    samples.test_trials = samples.test_trials[test_rows]
    samples.test_labels = np.searchsorted(keep_test, samples.test_labels[test_rows])
    samples.dropped["training_samples_without_photo"] = int((~train_rows).sum())
    samples.dropped["test_samples_without_photo"] = int((~test_rows).sum())
    return Photos(paths=photos, keep_train=keep_train, keep_test=keep_test)


def group_test_repeats(samples: Samples, photos: Photos, test_list: ImageList, h5: Path):
    """Step 4's test part: the trials as (image, repeat, voxel), every image with the same number of repeats; the
    repeat counts; noise ceiling and SNR from the repeats."""
    n_test = len(photos.keep_test)
    counts = np.bincount(samples.test_labels, minlength=n_test)
    if counts.min() != counts.max():
        common = int(np.bincount(counts).argmax())
        odd = [f"{test_list.names[photos.keep_test[i]]} ({counts[i]})" for i in np.flatnonzero(counts != common)]
        raise DataError(f"{h5}: test images must all have the same number of repeats; most have {common}, these "
                        f"differ: {', '.join(odd[:10])}")
    order = np.argsort(samples.test_labels, kind="stable")
    grouped = samples.test_trials[order].reshape(n_test, counts[0], -1)
    ceiling, snr = release.noise_ceiling_from_repeats(grouped)
    return grouped, counts, ceiling, snr


def load_images(photos: Photos, train_list: ImageList, test_list: ImageList, resolution: int, say):
    """Step 5: the kept images of each list, in list order, as uint8 (N, res, res, 3)."""
    say(f"reading {len(photos.keep_train) + len(photos.keep_test)} photos at {resolution} px")
    train = np.stack([load_photo(photos.paths[train_list.names[i]], resolution) for i in photos.keep_train])
    test = np.stack([load_photo(photos.paths[test_list.names[i]], resolution) for i in photos.keep_test])
    return train, test


def provenance(h5: Path, images: Path, opts: ConvertOptions, samples: Samples, masks: dict, n_test: int,
               repeats: int, lists: tuple[ImageList, ImageList], outputs: tuple[Path, Path]) -> dict:
    """The record written to convert.json (without its time)."""
    return {
        "source": {"h5": str(Path(h5).resolve()), "sha256": download.sha256(Path(h5)),
                   "images": str(Path(images).resolve()), "image_lists": [lists[0].source, lists[1].source]},
        "outputs": {"stimuli": outputs[0].name, "fmri": outputs[1].name},
        "keys_used": {"samples": ["DataType", samples.label_key, "Run", "Block"],
                      "voxels": ["VoxelData", *(f"ROI_{n}" for n in ROIS)]},
        "subject": opts.subject, "roi": opts.roi, "resolution": opts.resolution,
        "counts": {"train_samples": int(len(samples.train_fmri)), "test_trials": int(len(samples.test_trials)),
                   "test_images": n_test, "repeats_per_test_image": repeats,
                   "voxels": int(samples.kept.sum()), "voxels_per_roi": {n: int(m.sum()) for n, m in masks.items()}},
        "normalisation": "each voxel z-scored within each run (DataType, Run) over the kept samples, population std",
        "noise_ceiling": "brainrecon.data.release.noise_ceiling_from_repeats over the test repeats (as simulate)",
        "dropped": samples.dropped,
    }
