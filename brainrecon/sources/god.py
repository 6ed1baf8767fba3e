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
Everything is read and checked before anything is written; every file is written atomically.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrecon.atomic import write_text_atomic
from brainrecon.config import ROIS
from brainrecon.data import layout, release
from brainrecon.sources.bdata import read_bdata
from brainrecon.errors import DataError, UserError

MATCH_TOLERANCE = 1e-7
TRAIN, TEST, IMAGERY = 1, 2, 3
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class ImageList:
    ids: np.ndarray
    """(N,) float64 stimulus ids, in list order."""
    names: list[str]
    """File names, e.g. n01518878_10042.JPEG."""
    source: str


@dataclass
class ConvertOptions:
    subject: int
    roi: str = "VC"
    resolution: int = 112
    allow_missing: bool = False
    image_lists: tuple[Path, Path] | None = None
    """(training csv, test csv); None = the lists brainrecon carries."""


def image_list_paths(text: str | None) -> tuple[Path, Path] | None:
    """`--image-list TRAIN.csv,TEST.csv` -> the two paths (None when not given)."""
    if not text:
        return None
    parts = [Path(p.strip()) for p in text.split(",")]
    if len(parts) != 2:
        raise UserError(f"--image-list {text!r} must name two files: TRAIN.csv,TEST.csv")
    return parts[0], parts[1]


def stimulus_id(file_name: str) -> float:
    """n03626115_19498.JPEG -> 3626115.019498 (the encoding of GOD's stimulus_id)."""
    stem = Path(file_name).stem
    synset, _, number = stem.partition("_")
    if not synset.startswith("n") or not synset[1:].isdigit() or not number.isdigit():
        raise ValueError(f"{file_name!r} is not an ImageNet file name nXXXXXXXX_Y")
    return float(f"{int(synset[1:])}.{int(number):06d}")


def read_image_list(path: Path) -> ImageList:
    """A GOD image-id list: one `id,"file name"` per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image list not found; pass --image-list TRAIN.csv,TEST.csv (GOD's "
                        "imageID_training.csv and imageID_test.csv)")
    ids, names = [], []
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            try:
                ids.append(float(row[0]))
                names.append(row[1].strip())
            except (ValueError, IndexError):
                raise DataError(f"{path}: line {n} is not `id,\"file name\"` (found {','.join(row)!r})") from None
    if not ids:
        raise DataError(f"{path}: no image ids in the file")
    ids = np.asarray(ids, dtype=np.float64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{path}: the list holds duplicate ids")
    return ImageList(ids=ids, names=names, source=str(path))


def carried_lists() -> tuple[ImageList, ImageList]:
    """The GOD training (1,200) and test (50) image lists that ship with brainrecon (see god/README.md)."""
    from importlib import resources
    folder = resources.files("brainrecon.sources").joinpath("god")
    out = []
    for name in ("imageID_training.csv", "imageID_test.csv"):
        with resources.as_file(folder.joinpath(name)) as p:
            lst = read_image_list(p)
        lst.source = f"brainrecon/sources/god/{name} (GOD repository, KamitaniLab/GenericObjectDecoding data/{name})"
        out.append(lst)
    return out[0], out[1]


def match_ids(sample_ids: np.ndarray, lst: ImageList, path: Path, what: str) -> np.ndarray:
    """Index into `lst` of each sample id (nearest list id, refused beyond MATCH_TOLERANCE)."""
    order = np.argsort(lst.ids)
    sorted_ids = lst.ids[order]
    right = np.clip(np.searchsorted(sorted_ids, sample_ids), 0, len(sorted_ids) - 1)   # first list id >= sample id
    left = np.maximum(right - 1, 0)                                                    # the one below it
    pick = np.where(np.abs(sample_ids - sorted_ids[left]) <= np.abs(sample_ids - sorted_ids[right]), left, right)
    dist = np.abs(sample_ids - sorted_ids[pick])
    bad = np.flatnonzero(dist > MATCH_TOLERANCE)
    if len(bad):
        i = bad[0]
        raise DataError(f"{path}: {len(bad)} {what} sample(s) match no id of the {what} image list {lst.source} "
                        f"(first: stimulus_id {sample_ids[i]:.6f}, nearest list id {sorted_ids[pick[i]]:.6f}); use "
                        "the image list of this data with --image-list TRAIN.csv,TEST.csv")
    return order[pick]


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


def find_photos(folder: Path, names: list[str]) -> dict[str, Path]:
    """File name -> path for every listed photo found anywhere under `folder` (case-insensitive names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: photo folder not found; pass --images DIR (the GOD stimulus photos, or an "
                        "ImageNet tree)")
    wanted = {n.lower(): n for n in names}
    found: dict[str, Path] = {}
    for p in folder.rglob("*"):
        key = p.name.lower()
        if key in wanted and p.is_file():
            found.setdefault(wanted[key], p)
    return found


def square_resize(im, resolution: int) -> np.ndarray:
    """A PIL image -> centre-cropped to a square, bicubic anti-aliased resize (PIL), uint8 (convert-god, convert-nsd)."""
    from PIL import Image
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if side != w or side != h:
        im = im.crop((left, top, left + side, top + side))
    if side != resolution:
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def load_photo(path: Path, resolution: int) -> np.ndarray:
    """Centre crop to a square, bicubic anti-aliased resize (PIL), RGB uint8 (grey replicated)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return square_resize(im.convert("RGB"), resolution)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e}); remove it or replace it with the photo") from None


def lock_outputs(out: Path, paths: list[Path], h5: Path) -> None:
    """Record the written release files in the data folder's lock, so `fetch-data --verify` checks them like any
    fetched file (and fetch-data never downloads over them)."""
    from brainrecon.data import fetch
    entries = {e.name: e for e in fetch.load_registry()}
    lock = fetch.Lock(out)
    for p in paths:
        if p.name in entries:
            lock.record(entries[p.name], p, fetch.sha256(p), f"brainrecon convert-god from {Path(h5).name}")


def convert_god(h5: Path, images: Path, out: Path, opts: ConvertOptions, say=lambda s: None) -> dict:
    """Convert one subject; returns the provenance record also written to `out/convert.json`. Holds the output
    folder's data lock throughout: a second convert-god or fetch-data there stops at once, naming this one."""
    from brainrecon.train import runlock
    with runlock.hold_data(out):
        return _convert_god(Path(h5), Path(images), Path(out), opts, say)


def _convert_god(h5: Path, images: Path, out: Path, opts: ConvertOptions, say) -> dict:
    start = time.perf_counter()
    if opts.roi not in ROIS:
        raise UserError(f"--roi {opts.roi!r} is not a ROI; choose one of {', '.join(ROIS)}")
    say(f"reading {h5}")
    bd = read_bdata(h5)
    if bd.dataset.dtype != np.float64:
        raise DataError(f"{h5}: the data are stored as {bd.dataset.dtype}, but stimulus ids need float64 (in "
                        "float32 the 1,200 training ids collapse to about 150 values); use the original float64 "
                        "file")
    train_list, test_list = (read_image_list(opts.image_lists[0]), read_image_list(opts.image_lists[1])) \
        if opts.image_lists else carried_lists()

    data_type = bd.field("DataType")
    ids = bd.field("stimulus_id", "Label")
    run = bd.field("Run")
    bd.field("Block")  # a GOD file has it; its absence means another kind of file
    voxel_cols = bd.columns("VoxelData")
    roi_cols = {name: bd.columns(f"ROI_{name}") & voxel_cols for name in ROIS}
    kept = roi_cols[opts.roi]
    if not kept.any():
        raise DataError(f"{h5}: ROI_{opts.roi} selects no voxel; choose another --roi")

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
    train_fmri, test_trials = voxels[is_train], voxels[is_test]

    names = train_list.names + test_list.names
    photos = find_photos(images, names)
    missing_train = [i for i, n in enumerate(train_list.names) if n not in photos]
    missing_test = [i for i, n in enumerate(test_list.names) if n not in photos]
    n_missing = len(missing_train) + len(missing_test)
    if n_missing and not opts.allow_missing:
        first = [f"{train_list.ids[i]:.6f} ({train_list.names[i]})" for i in missing_train] + \
                [f"{test_list.ids[i]:.6f} ({test_list.names[i]})" for i in missing_test]
        raise DataError(f"{images}: {n_missing} of {len(names)} listed photos not found (first: "
                        f"{', '.join(first[:10])}); add them, or pass --allow-missing to drop those pairs")
    dropped = {"imagery_samples": int((data_type == IMAGERY).sum()), "one_back_repeats": int(repeats.sum()),
               "training_images_without_photo": [train_list.names[i] for i in missing_train],
               "test_images_without_photo": [test_list.names[i] for i in missing_test]}
    # drop the pairs without a photo from both files, and re-index the labels onto the kept images
    keep_train_img = np.setdiff1d(np.arange(len(train_list.ids)), missing_train)
    keep_test_img = np.setdiff1d(np.arange(len(test_list.ids)), missing_test)
    train_rows = np.isin(train_labels, keep_train_img)
    test_rows = np.isin(test_labels, keep_test_img)
    train_fmri, train_labels = train_fmri[train_rows], np.searchsorted(keep_train_img, train_labels[train_rows])
    test_trials, test_labels = test_trials[test_rows], np.searchsorted(keep_test_img, test_labels[test_rows])
    dropped["training_samples_without_photo"] = int((~train_rows).sum())
    dropped["test_samples_without_photo"] = int((~test_rows).sum())

    n_test = len(keep_test_img)
    counts = np.bincount(test_labels, minlength=n_test)
    if counts.min() != counts.max():
        common = int(np.bincount(counts).argmax())
        odd = [f"{test_list.names[keep_test_img[i]]} ({counts[i]})" for i in np.flatnonzero(counts != common)]
        raise DataError(f"{h5}: test images must all have the same number of repeats; most have {common}, these "
                        f"differ: {', '.join(odd[:10])}")
    order = np.argsort(test_labels, kind="stable")
    grouped = test_trials[order].reshape(n_test, counts[0], -1)
    ceiling, snr = release.noise_ceiling_from_repeats(grouped)

    say(f"reading {len(keep_train_img) + n_test} photos at {opts.resolution} px")
    train_images = np.stack([load_photo(photos[train_list.names[i]], opts.resolution) for i in keep_train_img])
    test_images = np.stack([load_photo(photos[test_list.names[i]], opts.resolution) for i in keep_test_img])

    arrays = {"arr_0": train_fmri.astype(np.float32), "arr_1": test_trials.astype(np.float32),
              "arr_2": grouped.mean(1).astype(np.float32), "arr_3": train_labels.astype(np.int64),
              "arr_4": test_labels.astype(np.int64), "arr_5": ceiling,
              "arr_6": np.maximum(snr, 1e-3).astype(np.float32)}
    masks = {name: cols[kept] for name, cols in roi_cols.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stim_path = release.write_stimuli(layout.stimuli_file(out, opts.resolution), train_images, test_images)
    subj_path = release.write_subject(layout.subject_file(out, opts.subject), arrays, masks)
    lock_outputs(out, [stim_path, subj_path], h5)
    from brainrecon.data.fetch import sha256
    h5_sha256 = sha256(Path(h5))
    record = {
        "source": {"h5": str(Path(h5).resolve()), "sha256": h5_sha256, "images": str(Path(images).resolve()),
                   "image_lists": [train_list.source, test_list.source]},
        "outputs": {"stimuli": stim_path.name, "fmri": subj_path.name},
        "keys_used": {"samples": ["DataType", "stimulus_id" if "stimulus_id" in bd.keys else "Label", "Run", "Block"],
                      "voxels": ["VoxelData", *(f"ROI_{n}" for n in ROIS)]},
        "subject": opts.subject, "roi": opts.roi, "resolution": opts.resolution,
        "counts": {"train_samples": int(len(train_fmri)), "test_trials": int(len(test_trials)),
                   "test_images": n_test, "repeats_per_test_image": int(counts[0]),
                   "voxels": int(kept.sum()), "voxels_per_roi": {n: int(m.sum()) for n, m in masks.items()}},
        "normalisation": "each voxel z-scored within each run (DataType, Run) over the kept samples, population std",
        "noise_ceiling": "brainrecon.data.release.noise_ceiling_from_repeats over the test repeats (as simulate)",
        "dropped": dropped,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text_atomic(out / "convert.json", json.dumps(record, indent=2))
    return record
