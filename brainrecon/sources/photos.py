"""Stimulus photos for the converters: finding listed photos by file name under a folder, and each photo as the release
stores it (centre-cropped to a square, bicubic anti-aliased resize with PIL, RGB uint8). Used by convert-god and
convert-nsd.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainrecon.errors import DataError


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
    """A PIL image -> centre-cropped to a square, bicubic anti-aliased resize (PIL), uint8 (convert-god and
    convert-nsd)."""
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
