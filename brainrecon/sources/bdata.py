"""A reader for bdpy's BData HDF5 files (the Kamitani lab's preprocessed GOD fMRI, Subject1.h5 ... Subject5.h5).

The format, as bdpy writes it:
    /dataset             float64 (samples, columns): every per-sample field and every voxel is a column
    /metadata/key        UTF-8 byte strings, one per metadata key
    /metadata/description  UTF-8 byte strings, one per key
    /metadata/value      float64 (keys, columns); NaN = does not apply. Column c belongs to key K when value[K, c] == 1
Older files name the groups `dataSet` and `metaData`; both spellings are read.
Per-sample fields are single columns (`DataType`, `stimulus_id` or older `Label`, `Run`, `Block`); per-voxel fields
are metadata rows (`VoxelData`, `ROI_V1` ... `ROI_VC`, `voxel_x/y/z`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrecon.errors import DataError

GROUPS = {"dataset": ("dataset", "dataSet"), "metadata": ("metadata", "metaData")}


@dataclass
class BData:
    dataset: np.ndarray
    """(samples, columns), as stored (float64 in a valid file)."""
    keys: list[str]
    values: np.ndarray
    """(keys, columns) float64; NaN = does not apply."""
    path: Path

    def columns(self, key: str) -> np.ndarray:
        """Boolean mask of the columns that belong to `key`; DataError naming the key if the file lacks it."""
        if key not in self.keys:
            raise DataError(f"{self.path}: metadata key {key!r} missing (found {', '.join(self.keys[:12])}"
                            f"{'...' if len(self.keys) > 12 else ''}); this is not a GOD BData file of the expected "
                            "kind")
        return self.values[self.keys.index(key)] == 1

    def field(self, *names: str) -> np.ndarray:
        """A per-sample field stored as one column (the first of `names` the file has), as float64."""
        for name in names:
            if name in self.keys:
                cols = np.flatnonzero(self.columns(name))
                if len(cols) != 1:
                    raise DataError(f"{self.path}: field {name!r} should be one column, found {len(cols)}")
                return self.dataset[:, cols[0]]
        raise DataError(f"{self.path}: no {' / '.join(repr(n) for n in names)} column; the file is not a GOD BData "
                        "file (bdpy) with per-sample fields")


def _group(f, kind: str, path: Path):
    for name in GROUPS[kind]:
        if name in f:
            return f[name]
    raise DataError(f"{path}: no /{GROUPS[kind][0]} (or /{GROUPS[kind][1]}) in the file; not a BData file")


def _strings(a) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in np.asarray(a).ravel()]


def read_bdata(path: Path) -> BData:
    """Read a BData file whole; any unreadable or malformed file is one DataError naming it."""
    import h5py
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; get the GOD preprocessed fMRI (figshare 7387130) with "
                        "`brainrecon fetch-data --only god-h5 --subjects N` or pass its path with --h5")
    try:
        with h5py.File(path, "r") as f:
            data = _group(f, "dataset", path)
            meta = _group(f, "metadata", path)
            for k in ("key", "value"):
                if k not in meta:
                    raise DataError(f"{path}: /metadata/{k} missing; not a BData file")
            dataset = data[()] if isinstance(data, h5py.Dataset) else None
            keys, values = _strings(meta["key"][()]), np.asarray(meta["value"][()], dtype=np.float64)
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0]}); the file may be truncated: "
                        "download it again") from None
    if dataset is None or dataset.ndim != 2:
        raise DataError(f"{path}: /dataset should be a 2-D matrix (samples x columns)")
    if values.ndim != 2 or values.shape != (len(keys), dataset.shape[1]):
        raise DataError(f"{path}: /metadata/value has shape {values.shape}, expected ({len(keys)} keys, "
                        f"{dataset.shape[1]} columns)")
    return BData(dataset=dataset, keys=keys, values=values, path=path)


def write_bdata(path: Path, fields: dict[str, np.ndarray], voxels: np.ndarray, voxel_rows: dict[str, np.ndarray],
                old_names: bool = False, dtype=np.float64, drop_keys: tuple[str, ...] = ()) -> Path:
    """Write a BData file as bdpy does: per-sample `fields` (one column each), then the voxel columns, with one
    metadata row per field, `VoxelData` and each of `voxel_rows` (ROI_*, voxel_x/y/z). For the rehearsal world and
    the tests; `old_names` writes the older group names, `drop_keys` leaves metadata rows out."""
    import h5py
    n_fields = len(fields)
    data = np.hstack([np.stack(list(fields.values()), 1), voxels]).astype(dtype)
    n_cols = data.shape[1]
    keys, values, desc = [], [], []
    for i, name in enumerate(fields):
        row = np.full(n_cols, np.nan)
        row[i] = 1
        keys.append(name), values.append(row), desc.append(f"1 = {name} column")
    for name, per_voxel in {"VoxelData": np.ones(voxels.shape[1]), **voxel_rows}.items():
        row = np.full(n_cols, np.nan)                                    # NaN over the per-sample columns
        row[n_fields:] = per_voxel
        keys.append(name), values.append(row), desc.append(f"{name} of each voxel")
    keep = [i for i, k in enumerate(keys) if k not in drop_keys]
    with h5py.File(path, "w") as f:
        f.create_dataset("dataSet" if old_names else "dataset", data=data)
        meta = f.create_group("metaData" if old_names else "metadata")
        meta.create_dataset("key", data=np.array([keys[i].encode() for i in keep]))
        meta.create_dataset("description", data=np.array([desc[i].encode() for i in keep]))
        meta.create_dataset("value", data=np.stack([values[i] for i in keep]))
    return Path(path)
