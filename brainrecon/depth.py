"""make-depth: batched, resumable MiDaS v2.1 over an image tree -> uint8 PNGs, or a stimulus npz -> the RGBD npz.

Output PNGs are named by the image's position in ImageFolder order (`00000000.png`, ...), so the data layer's natural
sort pairs them with the tree. Each PNG is written atomically; existing ones are skipped (resume).
A stimulus npz is made by default as the release's RGBD file is (MiDaS large on the stimuli at 224 px), under the name
the trainers read (`rgbd_<res>_from_224_large_png_uint8.npz`); another model or source size gets its own name, which
the trainers do not read, and make-depth says so.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from brainrecon.atomic import write_atomic
from brainrecon.data import imagenet, layout
from brainrecon.data.transforms import normalize_imagenet
from brainrecon.errors import DataError, UserError
from brainrecon.models.midas import SPECS, load_midas_v21


def net_shape(h: int, w: int, net_size: int) -> tuple[int, int]:
    """Keep the aspect ratio, the shorter side near `net_size`, both sides multiples of 32 (MiDaS 'lower_bound')."""
    scale = net_size / min(h, w)
    return (max(32, int(math.ceil(h * scale / 32) * 32)), max(32, int(math.ceil(w * scale / 32) * 32)))


RGBD_MODEL, RGBD_SOURCE_SIZE = "large", 224
"""How the release's RGBD stimulus file was made, and so what `make-depth --rgbd-npz` does by default."""


def predict(model, images: list[np.ndarray], device, net_size: int | None = None) -> list[np.ndarray]:
    """uint8 RGB images of one size -> uint8 depth maps at the image size, min-max scaled per image. MiDaS runs with the
    shorter side near `net_size` (default the model's own: 384 large, 256 small)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).to(device)
    h, w = x.shape[-2:]
    x = F.interpolate(x, size=net_shape(h, w, net_size or model.spec.net_size), mode="bicubic", align_corners=False)
    with torch.inference_mode():
        pred = model(normalize_imagenet(x.clamp(0, 1)))
        pred = F.interpolate(pred.unsqueeze(1), size=(h, w), mode="bicubic", align_corners=False).squeeze(1)
    lo = pred.flatten(1).amin(1).view(-1, 1, 1)
    hi = pred.flatten(1).amax(1).view(-1, 1, 1)
    scaled = (pred - lo) / (hi - lo).clamp_min(1e-8) * 255
    return list(scaled.round().clamp(0, 255).to(torch.uint8).cpu().numpy())


@dataclass
class DepthReport:
    written: int = 0
    skipped_existing: int = 0
    failed: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


def resolve_weights(weights: Path | None, model: str, data_dir: Path) -> Path:
    return Path(weights) if weights else layout.midas_file(data_dir, model)


def depth_tree(images: Path, out: Path, model, device, batch_size: int = 8, progress=None,
               net_size: int | None = None) -> DepthReport:
    """Write one depth PNG per image of the tree; corrupt images are reported and skipped."""
    files = imagenet.list_images(images)
    out.mkdir(parents=True, exist_ok=True)
    report = DepthReport()
    start = time.perf_counter()
    todo = []
    for i, f in enumerate(files):
        if (out / f"{i:08d}.png").exists():
            report.skipped_existing += 1
        else:
            todo.append((i, f))
    buckets: dict = {}

    def flush(shape):
        items = buckets.pop(shape)
        for ((i, _), _image), d in zip(items, predict(model, [a for _, a in items], device, net_size)):
            write_atomic(out / f"{i:08d}.png", lambda p, d=d: Image.fromarray(d).save(p, format="PNG"))
        report.written += len(items)
        if progress:
            progress(len(items), report)

    for i, f in todo:
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            report.failed.append((str(f), str(e).splitlines()[0]))
            if progress:
                progress(1, report)
            continue
        buckets.setdefault(a.shape[:2], []).append(((i, f), a))
        if len(buckets[a.shape[:2]]) >= batch_size:
            flush(a.shape[:2])
    for shape in list(buckets):
        flush(shape)
    report.seconds = time.perf_counter() - start
    return report


def rgbd_name(resolution: int, source_size: int, size_name: str) -> str:
    """rgbd_<res>_from_<src>_<model>_png_uint8.npz; with the release's recipe, the name the trainers read."""
    return f"rgbd_{resolution}_from_{source_size}_{size_name}_png_uint8.npz"


def rgbd_npz(stimuli: Path, out_dir: Path, model, device, size_name: str, source_size: int | None = None,
             batch_size: int = 8, net_size: int | None = None) -> Path:
    """images_<res>.npz -> rgbd_<res>_from_<src>_<model>_png_uint8.npz: depth computed at the source size (default
    224, the release's), stored as uint8 (as the PNG route does), resized to <res> and appended as a 4th channel in
    [0, 1]."""
    try:
        with np.load(stimuli) as z:
            train, test = z["train_images"], z["test_images"]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{stimuli}: not an images_<res>.npz stimulus file ({e})") from None
    res = train.shape[1]
    src = source_size or RGBD_SOURCE_SIZE
    rgbd = {}
    for key, imgs in (("train_images", train), ("test_images", test)):
        u8 = imgs if imgs.dtype == np.uint8 else np.round(np.clip(imgs, 0, 1) * 255).astype(np.uint8)
        x = torch.from_numpy(u8).permute(0, 3, 1, 2).float()
        if src != res:
            x = F.interpolate(x, size=(src, src), mode="bicubic", align_corners=False).clamp(0, 255)
        src_u8 = x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        depth = []
        for i in range(0, len(src_u8), batch_size):
            depth += predict(model, list(src_u8[i:i + batch_size]), device, net_size)
        d = torch.from_numpy(np.stack(depth)).float().unsqueeze(1)
        d = F.interpolate(d, size=(res, res), mode="bilinear", align_corners=False, antialias=True) / 255
        rgbd[key] = np.concatenate([u8 / np.float32(255), d.clamp(0, 1).permute(0, 2, 3, 1).numpy()],
                                   axis=-1).astype(np.float32)
    path = Path(out_dir) / rgbd_name(res, src, size_name)

    def writer(tmp: Path):
        buf = io.BytesIO()
        np.savez(buf, **rgbd)
        tmp.write_bytes(buf.getvalue())
    return write_atomic(path, writer)


def load_model(size: str, weights: Path | None, data_dir: Path, device):
    if size not in SPECS:
        raise UserError(f"--model {size!r}; choose small or large")
    return load_midas_v21(resolve_weights(weights, size, data_dir), size).to(device)
