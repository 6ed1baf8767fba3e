"""The unpaired image tree (`imagenet/val/<class>/<file>`) and its parallel depth-PNG folders.

Order, as the release assumes: class folders sorted, files sorted within (torchvision ImageFolder order); depth PNGs
sorted naturally, the i-th PNG being the depth of the i-th image. Counts must match.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from brainrecon.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(root: Path) -> list[Path]:
    """Image files of an ImageNet-style tree in ImageFolder order (class folders sorted, files sorted within)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; run `brainrecon fetch-data --only imagenet` (GOD), "
                        "`brainrecon convert-nsd --unpaired 10000` (NSD) or `brainrecon simulate --out DIR`")
    files = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        files += sorted(p for p in cls.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no class folders holding .jpg/.jpeg/.png images; expected <root>/<class>/<image>")
    return files


def list_depth_pngs(folder: Path, n_images: int | None = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: depth folder not found; run `brainrecon fetch-data --only depth` "
                        "or `brainrecon make-depth`")
    files = sorted((p for p in folder.rglob("*.png")), key=lambda p: natural_key(str(p.relative_to(folder))))
    if n_images is not None and len(files) != n_images:
        raise DataError(f"{folder}: {len(files)} depth PNGs but {n_images} images; each image needs exactly one "
                        "depth map; re-run `brainrecon make-depth` into an empty folder")
    return files


def load_image(path: Path, size: int, mode: str = "RGB") -> np.ndarray:
    """Resize the shorter side to `size` (bilinear), centre-crop to size x size; uint8 (size, size, C)."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            w, h = im.size
            scale = size / min(w, h)
            if (w, h) != (size, size):
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e}); remove or replace the file") from None
    return a[..., None] if a.ndim == 2 else a


def load_unpaired(image_root: Path, depth_folder: Path | None, size: int, limit: int = 0,
                  workers: int = 4) -> np.ndarray:
    """The unpaired pool as uint8 (N, size, size, 3 or 4): RGB, plus the paired depth channel when a folder is given."""
    images = list_images(image_root)
    depths = list_depth_pngs(depth_folder, len(images)) if depth_folder is not None else None
    if limit:
        images = images[:limit]
        depths = depths[:limit] if depths is not None else None
    with ThreadPoolExecutor(workers) as pool:
        rgb = np.stack(list(pool.map(lambda p: load_image(p, size, "RGB"), images)))
        if depths is None:
            return rgb
        depth = np.stack(list(pool.map(lambda p: load_image(p, size, "L"), depths)))
    return np.concatenate([rgb, depth], axis=-1)
