"""The checks behind `write_subject`: a lab's own arrays -> the release's arrays, each problem one DataError line.

Every function takes `name`, how the message calls the input: the argument (`train_fmri`) from Python, the flag and
its file (`--train-fmri train.npy`) from `brainrecon import-arrays`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from brainrecon.data.release import non_finite
from brainrecon.errors import DataError

IMAGE_SIDE_MIN = 16


def fmri(a, name: str, what: str, ndim: tuple[int, ...] = (2,)) -> np.ndarray:
    """A float array of `ndim` dimensions, finite, as float32."""
    a = np.asarray(a)
    if a.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise DataError(f"{name}: expected {what}, {want}; found shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{name}: expected floats ({what}; z-scored betas are recommended), found dtype {a.dtype}; "
                        "convert it (e.g. a.astype(np.float32), after any scaling)")
    if min(a.shape, default=0) == 0:
        raise DataError(f"{name}: {what} is empty (shape {a.shape})")
    finite(a, name, what)
    return a.astype(np.float32, copy=False)


def finite(a: np.ndarray, name: str, what: str) -> None:
    if (found := non_finite(a)) is not None:
        raise DataError(f"{name}: {what} {found}; repair or drop those voxels or trials before writing")


def index(a, name: str, length: int, n_targets: int, targets: str) -> np.ndarray:
    """A 1-D integer index of `length` entries into `n_targets` rows of `targets`, as int64."""
    a = np.asarray(a)
    if a.ndim != 1 or len(a) != length:
        raise DataError(f"{name}: expected one index per trial, shape ({length},), found shape {a.shape}")
    integral = np.issubdtype(a.dtype, np.integer) or (np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all()
                                                      and np.all(np.mod(a, 1) == 0))
    if not integral or a.dtype == bool:
        raise DataError(f"{name}: expected integer indices (0-based rows of {targets}), found dtype {a.dtype}")
    a = a.astype(np.int64)
    if length and (a.min() < 0 or a.max() >= n_targets):
        raise DataError(f"{name}: indices must lie in 0..{n_targets - 1} (0-based rows of the {n_targets} {targets}), "
                        f"found [{a.min()}, {a.max()}]")
    return a


def square_image(image: np.ndarray, resolution: int, mode: str) -> np.ndarray:
    """One (H, W[, C]) uint8 image -> centre-cropped to a square, bicubic anti-aliased resize to `resolution` (PIL),
    as the converters store photos; (R, R, 3) for mode RGB, (R, R) for L."""
    from PIL import Image
    im = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    im = im.convert(mode)
    w, h = im.size
    side = min(w, h)
    if side != w or side != h:
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    if side != resolution:
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def _as_uint8(a: np.ndarray, name: str, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{name}: {what} expected uint8 (0..255) or floats in [0, 1], found dtype {a.dtype}")
    finite(a, name, what)
    if a.size and (a.min() < 0 or a.max() > 1):
        raise DataError(f"{name}: {what} expected floats in [0, 1], found [{float(a.min()):.3g}, "
                        f"{float(a.max()):.3g}]; scale them (floats in 0..255: divide by 255)")
    return np.round(a * 255).astype(np.uint8)


def images(items, name: str, resolution: int, depth: bool = False) -> np.ndarray:
    """Images as an (N, H, W[, C]) array or a sequence of (H, W[, C]) arrays (sizes may differ), uint8 or floats in
    [0, 1] -> (N, R, R, 3) uint8 (depth: (N, R, R, 1)), centre-cropped and resized."""
    what = "depth maps (N, H, W), near = high" if depth else "images (N, H, W, 3) or grey (N, H, W)"
    channels = (1,) if depth else (1, 3)
    seq: Sequence = list(items) if not isinstance(items, np.ndarray) else items
    if isinstance(items, np.ndarray) and items.ndim not in (3, 4):
        raise DataError(f"{name}: expected {what}, found shape {items.shape}")
    if len(seq) == 0:
        raise DataError(f"{name}: no {'depth maps' if depth else 'images'}")
    out = []
    for k, item in enumerate(seq):
        a = np.asarray(item)
        where = f"{name} [{k}]" if not isinstance(items, np.ndarray) else name
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in channels):
            found = a.shape if not isinstance(items, np.ndarray) else items.shape
            raise DataError(f"{where}: expected {what} (channels {' or '.join(map(str, channels))}), found shape "
                            f"{found}{'; drop the alpha channel' if a.ndim == 3 and a.shape[2] == 4 else ''}")
        if min(a.shape[:2]) < IMAGE_SIDE_MIN:
            raise DataError(f"{where}: an image of {a.shape[1]} x {a.shape[0]} px is too small (at least "
                            f"{IMAGE_SIDE_MIN} px a side)")
        a = _as_uint8(a, where, what)
        out.append(square_image(a, resolution, "L" if depth else "RGB"))
    stacked = np.stack(out)
    return stacked[..., None] if depth else stacked


def masks(given: dict | None, name: str, n_voxels: int, rois: tuple[str, ...],
          labels: dict | None = None) -> tuple[dict, dict]:
    """{ROI: bool (V,)} for every ROI name of the format, and how each was made: a given mask as given (bool, or 0/1
    numbers), VC every voxel when not given, any other ROI not given empty. `labels`: how messages name each given
    mask (default: `name` and the ROI)."""
    given = dict(given or {})
    unknown = [k for k in given if k not in rois]
    if unknown:
        raise DataError(f"{name}: unknown ROI name {unknown[0]!r}; the trainers' --roi accepts {', '.join(rois)} "
                        "(others: merge your masks into these names)")
    out, record = {}, {}
    for roi in rois:
        if roi not in given:
            out[roi] = np.ones(n_voxels, bool) if roi == "VC" else np.zeros(n_voxels, bool)
            record[roi] = "not given: every voxel" if roi == "VC" else "not given: empty"
            continue
        m = np.asarray(given[roi])
        where = (labels or {}).get(roi, f"{name} {roi!r}")
        if m.ndim != 1 or len(m) != n_voxels:
            raise DataError(f"{where}: expected a mask over the {n_voxels} voxels (the fMRI's columns), shape "
                            f"({n_voxels},), found shape {m.shape}")
        if m.dtype != bool:
            if not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
                raise DataError(f"{where}: expected a boolean mask (or 0/1 values), found dtype {m.dtype} with other "
                                "values")
            m = m.astype(bool)
        if not m.any():
            raise DataError(f"{where}: the mask selects no voxel; leave it out or fix it")
        out[roi], record[roi] = m, "given"
    return out, record


def repeats(index_: np.ndarray, name: str, n_test: int) -> int:
    """The number of repeats per test image, which must be the same for all (each at least once)."""
    counts = np.bincount(index_, minlength=n_test)
    if counts.min() == 0:
        missing = np.flatnonzero(counts == 0)
        raise DataError(f"{name}: test image(s) {', '.join(map(str, missing[:10]))} have no trial; every one of the "
                        f"{n_test} test images needs the same number of repeats (drop unseen images)")
    if counts.min() != counts.max():
        common = int(np.bincount(counts).argmax())
        odd = [f"{i} ({counts[i]})" for i in np.flatnonzero(counts != common)]
        raise DataError(f"{name}: every test image needs the same number of repeats; most have {common}, these differ: "
                        f"{', '.join(odd[:10])}; drop the extra trials or the images")
    return int(counts[0])
