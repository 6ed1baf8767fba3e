"""GOD's image-id lists: reading them (`id,"file name"` per line), the two lists brainrecon carries, and matching a
sample's float64 stimulus id to its image (step 3 of `brainrecon.sources.god`'s conversion).

ImageNet file nXXXXXXXX_Y is stored as the float XXXXXXXX.YYYYYY (Y zero-padded to six digits); a sample id is matched
to the nearest id of a list, and a match farther than `MATCH_TOLERANCE` is refused.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from brainrecon.errors import DataError, UserError

MATCH_TOLERANCE = 1e-7


@dataclass
class ImageList:
    ids: np.ndarray
    """(N,) float64 stimulus ids, in list order."""
    names: list[str]
    """File names, e.g. n01518878_10042.JPEG."""
    source: str


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
