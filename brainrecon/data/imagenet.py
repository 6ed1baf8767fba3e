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

from brainrecon.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
GOD_TEST_LIST = "sources/god/imageID_test.csv"
"""The GOD test-image list that ships with brainrecon (`<id>,"<synset>_<n>.JPEG"` per line, 50 lines)."""
EXCLUDE_GOD_TEST = "god-test"


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(root: Path) -> list[Path]:
    """Image files of an ImageNet-style tree in ImageFolder order (class folders sorted, files sorted within)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; run `brainrecon fetch-data --only imagenet` (GOD), "
                        "`brainrecon convert-nsd --unpaired 10000` (NSD) or `brainrecon simulate --out DIR`, or put "
                        f"your own images there, one folder per class ({root}/<class>/<image>)")
    files = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        files += sorted(p for p in cls.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no class folders holding .jpg/.jpeg/.png images; expected <root>/<class>/<image>")
    return files


def list_depth_pngs(folder: Path, n_images: int | None = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        size = "large" if folder.name.endswith("_large_png_uint8") else "small"
        tree = folder.parent.parent / "imagenet" / "val" if folder.parent.name == "imagenet_depth" else "IMAGE_TREE"
        raise DataError(f"{folder}: depth folder not found; run `brainrecon fetch-data --only depth`, or make it from "
                        f"the image tree with MiDaS: `brainrecon make-depth --images {tree} --out {folder} --model "
                        f"{size}` (weights: `brainrecon fetch-data --only midas`)")
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


def god_test_list() -> list[tuple[str, str]]:
    """(synset, file name) of the 50 GOD test images, in test-image order, from the list that ships with brainrecon."""
    from importlib import resources
    out = []
    for line in resources.files("brainrecon").joinpath(GOD_TEST_LIST).read_text().splitlines():
        if line.strip():
            name = line.split(",")[1].strip().strip('"')
            out.append((name.split("_")[0], name))
    return out


def exclusion_classes(spec: str) -> list[str]:
    """`data.exclude_classes` -> the class folder names to leave out of the unpaired pool: '' or 'none' (nothing),
    'god-test' (the 50 GOD test synsets, as the 2022 code does) or a file with one class name per line."""
    if spec in ("", "none"):
        return []
    if spec == EXCLUDE_GOD_TEST:
        return list(dict.fromkeys(c for c, _ in god_test_list()))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"data.exclude_classes={spec!r}: no such file; give god-test, none, or a file with one "
                          "class folder name per line")
    names = [s.strip() for s in path.read_text().splitlines() if s.strip() and not s.lstrip().startswith("#")]
    return list(dict.fromkeys(names))


def class_of(path: Path, root: Path) -> str:
    """The class folder an image of an ImageNet-style tree sits in."""
    return Path(path).relative_to(root).parts[0]


def pool_files(image_root: Path, depth_folder: Path | None, limit: int = 0,
               exclude: list[str] | tuple = ()) -> tuple[list[Path], list[Path] | None, dict]:
    """(image files, their depth PNGs or None, what was left out) of the unpaired pool: the tree in ImageFolder order,
    the classes in `exclude` removed (with their depth maps, which pair by position), then the first `limit`."""
    images = list_images(image_root)
    depths = list_depth_pngs(depth_folder, len(images)) if depth_folder is not None else None
    drop = set(exclude)
    keep = [i for i, p in enumerate(images) if class_of(p, image_root) not in drop]
    found = sorted({class_of(images[i], image_root) for i in range(len(images))} & drop)
    removed = {"classes_listed": len(drop), "classes_removed": len(found), "images_removed": len(images) - len(keep)}
    images = [images[i] for i in keep]
    depths = [depths[i] for i in keep] if depths is not None else None
    if not images:
        raise DataError(f"{image_root}: every image belongs to an excluded class (data.exclude_classes); nothing is "
                        "left for the unpaired pool")
    if limit:
        images = images[:limit]
        depths = depths[:limit] if depths is not None else None
    return images, depths, removed


def load_unpaired(image_root: Path, depth_folder: Path | None, size: int, limit: int = 0,
                  workers: int = 4, exclude: list[str] | tuple = ()) -> np.ndarray:
    """The unpaired pool as uint8 (N, size, size, 3 or 4): RGB, plus the paired depth channel when a folder is given;
    the classes in `exclude` left out (see `pool_files`)."""
    images, depths, _ = pool_files(image_root, depth_folder, limit, exclude)
    with ThreadPoolExecutor(workers) as pool:
        rgb = np.stack(list(pool.map(lambda p: load_image(p, size, "RGB"), images)))
        if depths is None:
            return rgb
        depth = np.stack(list(pool.map(lambda p: load_image(p, size, "L"), depths)))
    return np.concatenate([rgb, depth], axis=-1)
