"""Test-only: write a simulated subject as a GOD BData HDF5 file (bdpy's schema) plus its photo folder and image lists.

The schema follows bdpy's writer: /dataset float64 (samples, columns); /metadata/key and /metadata/description as
byte strings; /metadata/value float64 (keys, columns), NaN where a key does not apply. Per-sample fields are one
column each (DataType, stimulus_id, Run, Block); voxels are the VoxelData columns with ROI_* and voxel_x/y/z rows.
The writer z-scores the simulated voxels within each run before writing (as the lab's preprocessing leaves them),
adds imagery samples and one-back repeats that the converter must drop, and returns what convert-god must give back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from brainrecon.config import ROIS
from brainrecon.data import layout
from brainrecon.sources.bdata import write_bdata

TRAIN_RUN, TEST_RUN = 50, 12   # samples per run


@dataclass
class Written:
    h5: Path
    photos: Path
    lists: tuple[Path, Path]
    expected: dict        # arrays convert-god must reproduce: arr_0..arr_4, masks, train/test images
    grey_train_image: int


def _zscore(x: np.ndarray, runs: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    for r in np.unique(runs):
        block = x[runs == r].astype(np.float64)
        sd = block.std(0)
        out[runs == r] = (block - block.mean(0)) / np.where(sd > 0, sd, 1)
    return out


def image_name(synset: int, number: int) -> str:
    return f"n{synset:08d}_{number}.JPEG"


def write_lists(folder: Path, n_train: int, n_test: int) -> tuple[Path, Path, list[str], list[str], np.ndarray,
                                                                   np.ndarray]:
    """GOD-format id lists with ids that need float64 (8-digit synsets, 6-digit numbers)."""
    rng = np.random.default_rng(1)
    train = [(12000000 + 17 * (i // 8), int(rng.integers(1, 99999))) for i in range(n_train)]
    test = [(13000000 + 23 * i, int(rng.integers(1, 99999))) for i in range(n_test)]
    paths = []
    for name, items in (("train.csv", train), ("test.csv", test)):
        p = folder / name
        p.write_text("".join(f'{s}.{n:06d},"{image_name(s, n)}"\n' for s, n in items))
        paths.append(p)
    ids = [np.array([float(f"{s}.{n:06d}") for s, n in items]) for items in (train, test)]
    return paths[0], paths[1], [image_name(*t) for t in train], [image_name(*t) for t in test], ids[0], ids[1]


def write_photos(folder: Path, names: list[str], images: np.ndarray, grey: int | None = None,
                 wide: int | None = None) -> None:
    """PNG bytes under the listed JPEG names (lossless, so pixels round-trip); one grey, one wider than tall."""
    for k, (name, im) in enumerate(zip(names, images)):
        sub = folder / name.split("_")[0]                              # one folder per synset, as an ImageNet tree
        sub.mkdir(parents=True, exist_ok=True)
        if k == grey:
            Image.fromarray(im.mean(2).round().astype(np.uint8), mode="L").save(sub / name, format="PNG")
        elif k == wide:
            pad = np.random.default_rng(k).integers(0, 256, (im.shape[0], 4, 3), dtype=np.uint8)
            Image.fromarray(np.concatenate([pad, im, pad], 1)).save(sub / name, format="PNG")
        else:
            Image.fromarray(im).save(sub / name, format="PNG")


def god_from_subject(root: Path, out: Path, resolution: int, subject: int = 3, old_names: bool = False,
                     dtype=np.float64, drop_keys: tuple[str, ...] = (), drop_test_trial: bool = False) -> Written:
    """Write `root`'s simulated subject as Subject<N>.h5 + photos + lists under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    sbj = np.load(layout.subject_file(root, subject))
    stim = np.load(layout.stimuli_file(root, resolution))
    train_images = np.round(stim["train_images"] * 255).astype(np.uint8)
    test_images = np.round(stim["test_images"] * 255).astype(np.uint8)
    train_fmri, train_labels = sbj["arr_0"], sbj["arr_3"]
    # presentation order with no image shown twice in a row (as in GOD, where only one-back repeats do that):
    # repeat k of every image, in image order, then repeat k + 1
    occurrence = np.zeros(len(sbj["arr_4"]), dtype=int)
    for label in np.unique(sbj["arr_4"]):
        where = np.flatnonzero(sbj["arr_4"] == label)
        occurrence[where] = np.arange(len(where))
    order = np.lexsort((sbj["arr_4"], occurrence))
    test_trials, test_labels = sbj["arr_1"][order], sbj["arr_4"][order]
    vc = sbj["VC"]
    train_csv, test_csv, train_names, test_names, train_ids, test_ids = write_lists(out, len(train_images),
                                                                                    len(test_images))
    # runs: consecutive blocks of samples; voxels z-scored within each run (what the converter leaves unchanged)
    train_runs = np.arange(len(train_fmri)) // TRAIN_RUN + 1
    test_runs = np.arange(len(test_trials)) // TEST_RUN + 1
    train_z, test_z = _zscore(train_fmri, train_runs), _zscore(test_trials, test_runs)

    rows, fields = [], {"DataType": [], "stimulus_id": [], "Run": [], "Block": []}

    def add(voxels, data_type, sid, run, block):
        rows.append(voxels)
        for k, v in zip(fields, (data_type, sid, run, block)):
            fields[k].append(v)
    rng = np.random.default_rng(2)
    for i in range(len(train_z)):
        add(train_z[i], 1, train_ids[train_labels[i]], train_runs[i], i % TRAIN_RUN + 1)
        if i % 37 == 5:      # a one-back repeat: same image again, right after, in the same run
            add(rng.standard_normal(train_z.shape[1]), 1, train_ids[train_labels[i]], train_runs[i], 0)
    for i in range(len(test_z)):
        if drop_test_trial and i == 0:
            continue
        add(test_z[i], 2, test_ids[test_labels[i]], test_runs[i], i % TEST_RUN + 1)
        if i % 11 == 3:
            add(rng.standard_normal(test_z.shape[1]), 2, test_ids[test_labels[i]], test_runs[i], 0)
    for i in range(6):       # imagery: not used
        add(rng.standard_normal(train_z.shape[1]), 3, test_ids[i % len(test_ids)], 1, i + 1)
    voxel_rows = {f"ROI_{name}": sbj[name].astype(np.float64) for name in ROIS}
    coords = np.arange(len(vc), dtype=np.float64)
    voxel_rows.update({"voxel_x": coords, "voxel_y": coords * 2, "voxel_z": coords * 3})
    h5 = write_bdata(out / f"Subject{subject}.h5", {k: np.asarray(v, dtype=np.float64) for k, v in fields.items()},
                     np.stack(rows), voxel_rows, old_names=old_names, dtype=dtype, drop_keys=drop_keys)

    grey = 3
    write_photos(out / "photos", train_names, train_images, grey=grey)
    write_photos(out / "photos", test_names, test_images, wide=1)
    grouped = test_z[np.argsort(test_labels, kind="stable")][:, vc].reshape(len(test_images), -1, int(vc.sum()))
    expected = {"arr_0": train_z[:, vc], "arr_1": test_z[:, vc], "arr_2": grouped.mean(1), "arr_3": train_labels,
                "arr_4": test_labels, "masks": {name: sbj[name][vc] for name in ROIS},
                "train_images": train_images, "test_images": test_images}
    return Written(h5=h5, photos=out / "photos", lists=(train_csv, test_csv), expected=expected,
                   grey_train_image=grey)
