"""python -m benchmarks.convert_god: convert-god at the real size (5,000 voxels x 3,450 samples: 1,200 training,
1,750 test trials, 500 imagery; 1,250 photos of 500x375 px), against the floor of reading the HDF5 file alone.

Target (issue 16): under 30 s on 2 CPU cores. Data are random (speed does not depend on values); the BData file is
written by the tests' writer in the exact schema.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from brainrecon.config import ROIS
from brainrecon.sources.god import ConvertOptions, convert_god
from tests.bdata_writer import write_bdata, write_lists


def build(folder: Path, n_voxels: int = 5000) -> tuple[Path, tuple[Path, Path]]:
    rng = np.random.default_rng(0)
    train_csv, test_csv, train_names, test_names, train_ids, test_ids = write_lists(folder, 1200, 50)
    test_order = np.concatenate([rng.permutation(50) for _ in range(35)])
    ids = np.concatenate([train_ids[rng.permutation(1200)], test_ids[test_order], test_ids[rng.integers(0, 50, 500)]])
    data_type = np.repeat([1.0, 2.0, 3.0], [1200, 1750, 500])
    run = np.concatenate([np.arange(1200) // 50 + 1, np.arange(1750) // 50 + 1, np.arange(500) // 50 + 1])
    fields = {"DataType": data_type, "stimulus_id": ids, "Run": run.astype(float),
              "Block": (np.arange(3450) % 50 + 1).astype(float)}
    rois = {f"ROI_{n}": (rng.random(n_voxels) < 0.3).astype(float) for n in ROIS}
    rois["ROI_VC"][:] = 1
    h5 = write_bdata(folder / "Subject3.h5", fields, rng.standard_normal((3450, n_voxels)), rois)
    photos = folder / "photos"
    photos.mkdir()
    for name in train_names + test_names:
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(photos / name, format="JPEG")
    return h5, (train_csv, test_csv)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        h5, lists = build(tmp)
        start = time.perf_counter()
        with h5py.File(h5) as f:
            f["dataset"][()]
        floor = time.perf_counter() - start
        start = time.perf_counter()
        record = convert_god(h5, tmp / "photos", tmp / "out", ConvertOptions(subject=3, image_lists=lists))
        seconds = time.perf_counter() - start
        c = record["counts"]
        print(f"convert-god, {c['voxels']} voxels x 3450 samples, {c['train_samples']} + {c['test_images']} photos:")
        print(f"  read the HDF5 alone (floor)      {floor:8.2f} s")
        print(f"  convert-god                      {seconds:8.2f} s   x{seconds / floor:6.1f} the floor   "
              f"(target < 30 s: {'met' if seconds < 30 else 'NOT met'})")


if __name__ == "__main__":
    main()
