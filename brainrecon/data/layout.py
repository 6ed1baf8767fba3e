"""Where the data lives and what each release file is called.

The data folder is, in order of precedence: the `--data-dir` flag, the `BRAINRECON_DATA` environment variable, then
pooch's per-user cache (`pooch.os_cache("brainrecon")`). Inside it the layout is exactly the release's:

    images_112.npz, rgbd_112_from_224_large_png_uint8.npz, sbj_<N>.npz, model-*.pt
    imagenet/val/<class>/<image>
    imagenet_depth/val_depth_on_orig_{small,large}_png_uint8/<index>.png
    imagenet_rgbd/vgg{16,19}_*_norm_within_img_best.pth.tar
"""

from __future__ import annotations

import os
from pathlib import Path

import pooch

ENV_VAR = "BRAINRECON_DATA"


def data_dir(flag: str | Path | None = None) -> Path:
    if flag:
        return Path(flag).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path(pooch.os_cache("brainrecon"))


def stimuli_file(root: Path, resolution: int = 112) -> Path:
    return root / f"images_{resolution}.npz"


def rgbd_file(root: Path, resolution: int = 112) -> Path:
    return root / f"rgbd_{resolution}_from_224_large_png_uint8.npz"


def subject_file(root: Path, subject: int) -> Path:
    return root / f"sbj_{subject}.npz"


def unpaired_image_dir(root: Path) -> Path:
    return root / "imagenet" / "val"


def unpaired_depth_dir(root: Path, source: str = "small") -> Path:
    return root / "imagenet_depth" / f"val_depth_on_orig_{source}_png_uint8"


def release_vgg_file(root: Path, arch: str, modality: str, large: bool = True) -> Path:
    kind = "rgbd" if modality == "rgbd" else "depth_only"
    return root / "imagenet_rgbd" / f"{arch}_{kind}{'_large' if large else ''}_norm_within_img_best.pth.tar"


def midas_file(root: Path, model: str) -> Path:
    return root / {"large": "model-f6b98070.pt", "small": "model-small-70d6b9c8.pt"}[model]
