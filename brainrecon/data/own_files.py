"""`brainrecon import-arrays`: a lab's own files (.npy arrays, image folders, .nii.gz masks) -> `write_subject`.

Arrays are .npy files (numpy.save). Images are a folder (its image files, sorted by name with numbers compared as
numbers: img2 before img10) or an .npy array. ROI masks are .npy (bool or 0/1 over the fMRI's columns) or NIfTI
volumes (.nii, .nii.gz) with `voxel_volume`: the volume whose voxels > 0, in C order over its (X, Y, Z) axes, are the
fMRI's columns (the order of `volume[mask > 0]` in numpy, as convert-nsd stores NSD's voxels).
Every bad file is one DataError line naming the flag and the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import brainrecon.data.own_checks as own_checks
from brainrecon.data.download import sha256
from brainrecon.data.imagenet import natural_key
from brainrecon.data.nifti import read_nifti
from brainrecon.data.own_data import SubjectInputs, write_inputs
from brainrecon.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
FLAGS = {"train_fmri": "--train-fmri", "train_images": "--train-images", "test_fmri": "--test-fmri",
         "test_images": "--test-images", "train_image_index": "--train-image-index",
         "test_image_index": "--test-image-index", "noise_ceiling": "--noise-ceiling", "train_depth": "--train-depth",
         "test_depth": "--test-depth", "rois": "--roi-mask", "subject": "--subject", "resolution": "--resolution",
         "overwrite": "--overwrite"}


@dataclass
class ImportOptions:
    """import-arrays' files and settings (each field is the flag of the same name)."""
    train_fmri: Path
    train_images: Path
    test_fmri: Path
    test_images: Path
    out: Path
    subject: int = 1
    train_image_index: Path | None = None
    test_image_index: Path | None = None
    roi_masks: dict[str, Path] = field(default_factory=dict)
    voxel_volume: Path | None = None
    noise_ceiling: Path | None = None
    train_depth: Path | None = None
    test_depth: Path | None = None
    resolution: int = 112
    overwrite: bool = False


def import_arrays(opts: ImportOptions) -> dict:
    """Read every file, then `write_subject`'s checks and writing; returns its provenance record."""
    names = {k: f"{flag} {getattr(opts, k)}" if isinstance(getattr(opts, k, None), Path) else flag
             for k, flag in FLAGS.items()}
    names.update({f"rois.{r}": f"--roi-mask {r}={p}" for r, p in opts.roi_masks.items()})
    arrays = {k: read_npy(getattr(opts, k), names[k]) if getattr(opts, k) is not None else None
              for k in ("train_fmri", "test_fmri", "train_image_index", "test_image_index", "noise_ceiling")}
    record: dict = {}
    images = {k: read_images(getattr(opts, k), names[k], opts.resolution, k.endswith("depth"), record)
              if getattr(opts, k) is not None else None
              for k in ("train_images", "test_images", "train_depth", "test_depth")}
    rois = {r: read_mask(p, names[f"rois.{r}"], opts.voxel_volume) for r, p in opts.roi_masks.items()}
    for key in ("train_fmri", "test_fmri", "train_image_index", "test_image_index", "noise_ceiling"):
        if getattr(opts, key) is not None:
            record[FLAGS[key]] = _file_record(getattr(opts, key))
    for roi, path in opts.roi_masks.items():
        record[f"--roi-mask {roi}"] = _file_record(path)
    if opts.voxel_volume is not None:
        record["--voxel-volume"] = _file_record(opts.voxel_volume)
    inputs = SubjectInputs(arrays["train_fmri"], images["train_images"], arrays["test_fmri"], images["test_images"],
                           rois, arrays["train_image_index"], arrays["test_image_index"], arrays["noise_ceiling"],
                           images["train_depth"], images["test_depth"], names=names)
    return write_inputs(opts.out, opts.subject, inputs, opts.resolution, opts.overwrite,
                        {"made_by": "brainrecon import-arrays", "inputs": record})


def read_npy(path: Path, name: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{name}: no such file; give a .npy array (numpy.save)")
    if path.suffix.lower() != ".npy":
        raise DataError(f"{name}: expected a .npy file (numpy.save), found {path.suffix or 'no suffix'}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{name}: not a readable .npy array ({e}); save it with numpy.save, without pickled "
                        "objects") from None


def image_files(folder: Path, name: str) -> list[Path]:
    """The folder's image files (its top level), sorted by name with numbers compared as numbers."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{name}: no image files ({', '.join(IMAGE_SUFFIXES)}) directly in this folder (sub-folders "
                        "are not read); put the images there, named in trial or index order")
    return sorted(files, key=lambda p: natural_key(p.name))


class ImageFolder(Sequence):
    """A folder's images in name order, each read, converted (RGB, or L for depth), centre-cropped and resized when
    it is reached: its length is known before any is read (the counts are checked first), and a folder of large
    photos never sits in memory whole. Fills `record` (sizes seen, a sha256 over names and files) as it goes."""

    def __init__(self, folder: Path, name: str, resolution: int, depth: bool, record: dict):
        self.files, self.name, self.resolution, self.mode = image_files(folder, name), name, resolution, \
            "L" if depth else "RGB"
        self.sizes: set = set()
        self.digest = hashlib.sha256()
        self.record = record
        record.update({"folder": str(Path(folder).resolve()), "files": len(self.files),
                       "first": [f.name for f in self.files[:3]], "last": [f.name for f in self.files[-3:]],
                       "order": "by name, numbers compared as numbers"})

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, k: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError
        f = self.files[k]
        try:
            with Image.open(f) as im:
                self.sizes.add(im.size)
                a = pixels(im, self.mode, f"{self.name}: {f.name}")
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{self.name}: {f.name} is not a readable image ({e}); replace or remove it") from None
        if min(a.shape[:2]) < own_checks.IMAGE_SIDE_MIN:
            raise DataError(f"{self.name}: {f.name} is {a.shape[1]} x {a.shape[0]} px, too small (at least "
                            f"{own_checks.IMAGE_SIDE_MIN} px a side)")
        self.digest.update(f"{f.name}\0{sha256(f)}\n".encode())
        shown = sorted(self.sizes)
        self.record["sizes_w_x_h"] = [f"{w} x {h}" for w, h in shown[:5]] + (["..."] if len(shown) > 5 else [])
        self.record["sha256_of_names_and_files"] = self.digest.hexdigest()
        return own_checks.square_image(a, self.resolution, self.mode)


def pixels(im, mode: str, where: str) -> np.ndarray:
    """An opened PIL image as uint8 pixels in `mode` (RGB or L). 16-bit grey (modes I;16, I;16B, I;16L, as MiDaS's
    write_depth and most 16-bit PNGs and TIFFs store it; a 16-bit PNG that older Pillows open as I) is mapped onto 8
    bits as round(value / 257): 0 -> 0, 65535 -> 255. Other 32-bit integer (I) and float (F) images are refused: their
    range is not known, and Pillow's own conversion clips them to 255 (I) or to 0 and 1 (F)."""
    if im.mode in SIXTEEN_BIT or (im.mode == "I" and im.format == "PNG"):
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{where}: {im.mode}-mode values outside 0..65535; save it as an 8-bit PNG, or give the "
                            "images as an .npy array (uint8, or floats in [0, 1])")
        grey = np.round(values / 257).astype(np.uint8)                                  # (H, W), 0..255
        return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)          # (H, W) -> (H, W, 3)
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        kind = "float" if im.mode == "F" else "32-bit integer" if im.mode == "I" else f"{im.mode} integer"
        raise DataError(f"{where}: {kind} pixels (mode {im.mode}), whose range brainrecon cannot know; save it as an "
                        "8-bit PNG, or give the images as an .npy array (uint8, or floats in [0, 1])")
    return np.asarray(im.convert(mode), dtype=np.uint8)


def read_images(path: Path, name: str, resolution: int, depth: bool, record: dict):
    """An image folder (an `ImageFolder`) or an .npy array; its record goes into `record` under the flag."""
    path = Path(path)
    flag = name.split()[0]
    if path.is_dir():
        record[flag] = {}
        return ImageFolder(path, name, resolution, depth, record[flag])
    array = read_npy(path, name)
    record[flag] = _file_record(path)
    return array


def read_mask(path: Path, name: str, voxel_volume: Path | None) -> np.ndarray:
    """A mask over the fMRI's columns: an .npy as stored, or a NIfTI volume read at `voxel_volume`'s voxels > 0."""
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        return read_npy(path, name)
    if voxel_volume is None:
        raise DataError(f"{name}: a NIfTI mask needs --voxel-volume FILE.nii.gz, the volume whose voxels > 0 (in C "
                        "order over X, Y, Z) are the fMRI's columns; or give the mask as a .npy over the columns")
    volume = _nifti(Path(voxel_volume), f"--voxel-volume {voxel_volume}")
    mask = _nifti(path, name)
    if mask.shape != volume.shape:
        raise DataError(f"{name}: volume shape {mask.shape} differs from --voxel-volume's {volume.shape}; use masks "
                        "in the same space (resample them to the functional volume)")
    return mask[volume > 0] > 0


def _nifti(path: Path, name: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{name}: no such file")
    return read_nifti(path, name)


def _file_record(path: Path) -> dict:
    path = Path(path)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256(path)}
