"""An .npz written one array at a time, and a big array one block of rows at a time.

np.savez needs every array in memory at once; a converted NSD subject (27,000 single trials x 15,000 voxels, 1.6 GB)
or its training images need not be. The file is the same zip of .npy members that np.savez writes (stored, zip64),
so np.load reads it like any other npz.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


class RowWriter:
    """Rows of one array, appended in order; the count is checked when the member is closed."""

    def __init__(self, handle, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.handle, self.name, self.shape, self.dtype = handle, name, tuple(shape), np.dtype(dtype)
        self.rows = 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.name}: rows of shape {block.shape[1:]}, expected {self.shape[1:]}")
        if self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.name}: more than the {self.shape[0]} rows declared")
        self.handle.write(block.tobytes())
        self.rows += len(block)


class NpzStream:
    """`with NpzStream(path) as z: z.put("a", array); with z.rows("b", shape, dtype) as w: w.write(block)...`"""

    def __init__(self, path: str | Path):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def put(self, name: str, array: np.ndarray) -> None:
        array = np.asarray(array)
        with self.rows(name, array.shape, array.dtype) as w:
            if array.ndim == 0:
                w.handle.write(array.tobytes())
                w.rows = 0
            else:
                w.write(array)

    def rows(self, name: str, shape: tuple[int, ...], dtype) -> "_Member":
        return _Member(self.zip, name, shape, dtype)


class _Member:
    def __init__(self, zf: zipfile.ZipFile, name: str, shape, dtype):
        self.zf, self.name, self.shape, self.dtype = zf, name, tuple(int(s) for s in shape), np.dtype(dtype)

    def __enter__(self) -> RowWriter:
        self.handle = self.zf.open(f"{self.name}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self.handle, header)
        self.writer = RowWriter(self.handle, self.name, self.shape, self.dtype)
        return self.writer

    def __exit__(self, exc_type, *exc):
        self.handle.close()
        if exc_type is None and self.shape and self.writer.rows != self.shape[0]:
            raise ValueError(f"{self.name}: {self.writer.rows} rows written, {self.shape[0]} declared")
