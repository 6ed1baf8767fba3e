"""classify: large-scale semantic classification of reconstructions (Gaziv, Beliy, Granot et al., NeuroImage 2022).

The protocol, as the authors' released evaluation describes it:
- images: every reconstruction (and every class image) brought to 112 x 112 px by a bicubic resize, as the authors
  do for every input size (`size=None` keeps the reconstructions' own side); optionally a JPEG round trip first (the
  authors classify quality-75 JPEG copies);
- features: torchvision's ImageNet AlexNet up to the ReLU after its 4th conv (`features[:10]`, 256 x 6 x 6 = 9,216
  values at 112 px), pixels scaled to [-1, 1], no mean/std normalisation;
- class prototypes: the mean of those features over up to `per_class` images of each class (the mean of features,
  not the features of a mean image); the class pool is every class folder of the image tree (the test classes, and
  the rest: ~1,000 classes for ILSVRC-2012); a test image found in its own class folder (same file name) is left out;
- distance: 1 - Pearson r between a reconstruction's features and each prototype;
- a trial: the true class plus n - 1 classes drawn at random from the rest of the pool; correct at top-k when fewer
  than k of the drawn classes are at least as close as the true class (ties count against it); `trials` per image.
Scores: per image its accuracy over the trials; per run the mean over images with a bootstrap 95 % CI over images;
chance k / n. Class images are resized (shorter side, bicubic) and centre-cropped to the same side.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from brainrecon.correlation import correlation_distance
from brainrecon.data.transforms import to_float
from brainrecon.errors import UserError
from brainrecon.evaluation.classify_options import FEATURES, SIDE, ClassifyOptions, parse_size  # noqa: F401
from brainrecon.evaluation.statistics import bootstrap_ci
from brainrecon.models import registry
from brainrecon.models.registry import check_complete, register_features

STAND_IN_STAGE = 4
"""The EfficientNet-Lite0 stage `effnet-lite0` taps: stride 16 like AlexNet conv4, and chosen among the stages by
top-1 on a constructed tree of low-level classes (benchmarks/classify_standin.py; docs/metrics.md)."""
STAND_IN = {"effnet-lite0": f"the EfficientNet-Lite0 that ships with brainrecon, stage {STAND_IN_STAGE} (stride 16), a "
                            "stand-in for the paper's AlexNet conv4 chosen by measurement (docs/metrics.md)",
            "effnet-lite0-last": "the EfficientNet-Lite0 that ships with brainrecon, its last feature map: a stand-in "
                                 "far more abstract than the paper's AlexNet conv4"}
PREPROCESS_VERSION = 2
"""Part of the prototype cache key: bump when the class images' preprocessing changes."""
Features = Callable[[torch.Tensor], torch.Tensor]
"""[0, 1] images (N, 3, H, W) -> features (N, D)."""


# --- feature networks ----------------------------------------------------------------------------------------------

def effnet_tap(net, stage: int | None) -> Features:
    """EfficientNet-Lite0 features of [0, 1] images: the output of stage `stage` (1..7), or the last map (None)."""
    def run(x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.5
        if stage is None:
            return net.forward_features(x).flatten(1)
        x = net.bn1(net.conv_stem(x))
        for block in net.blocks[:stage]:
            x = block(x)
        return x.flatten(1)
    return run


@register_features("alexnet")
def alexnet_conv4(device) -> Features:
    """The paper's: torchvision's ImageNet AlexNet up to the ReLU after conv4, pixels in [-1, 1] (weights fetched and
    hash-checked on first use; offline without them: one line, never a random network)."""
    from torchvision.models import AlexNet_Weights, alexnet
    try:
        net = alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, socket errors
        raise UserError(f"torchvision's ImageNet AlexNet weights are not in the torch hub cache "
                        f"({torch.hub.get_dir()}) and could not be downloaded ({type(e).__name__}); connect to "
                        "the internet once, or use --features effnet-lite0 (shipped, a stand-in)") from None
    conv4 = net.features[:10].eval().to(device)
    return lambda x: conv4(x.to(device) * 2 - 1).flatten(1)


def _shipped_effnet(device, stage: int | None) -> Features:
    from brainrecon.models.effnet import load_effnet_lite0
    tap = effnet_tap(load_effnet_lite0().eval().to(device), stage)
    return lambda x: tap(x.to(device))


@register_features("effnet-lite0")
def effnet_stage(device) -> Features:
    """The shipped EfficientNet-Lite0's stage STAND_IN_STAGE (stride 16, as AlexNet conv4)."""
    return _shipped_effnet(device, STAND_IN_STAGE)


@register_features("effnet-lite0-last")
def effnet_last(device) -> Features:
    """The shipped EfficientNet-Lite0's last feature map."""
    return _shipped_effnet(device, None)


check_complete("features")


def feature_network(name: str, device) -> Features:
    """The feature network `--features` names (brainrecon/config/networks.py declares them, with what each is); an
    unknown name is one line naming them."""
    return registry.features(name)(device)


def prepare(images: np.ndarray, size: int | None, jpeg: int = 0) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, S, S, 3): a JPEG round trip at `jpeg` quality (0: none), then a bicubic resize
    to `size` (None or the same side: unchanged). Non-square images: one line."""
    import io

    from PIL import Image
    if images.shape[1] != images.shape[2]:
        raise UserError(f"the images are {images.shape[1]} x {images.shape[2]} px; classify takes square images "
                        "(crop or resize them to a square first)")
    if not jpeg and (size is None or size == images.shape[1]):
        return images
    out = []
    for a in images:
        im = Image.fromarray(a)
        if jpeg:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=jpeg)
            buf.seek(0)
            im = Image.open(buf).convert("RGB")
        if size is not None and size != im.size[0]:
            im = im.resize((size, size), Image.BICUBIC)
        out.append(np.asarray(im, dtype=np.uint8))
    return np.stack(out)


@torch.no_grad()
def extract(features: Features, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float64 features (N, D)."""
    out = []
    for i in range(0, len(images), batch):
        x = to_float(images[i:i + batch])
        out.append(features(x).double().cpu().numpy())
    return np.concatenate(out)


# --- the class pool and its prototypes -----------------------------------------------------------------------------

def load_square(path: Path, side: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = side / min(im.size)
        w, h = max(side, round(im.size[0] * scale)), max(side, round(im.size[1] * scale))
        im = im.resize((w, h), Image.BICUBIC)
        left, top = (w - side) // 2, (h - side) // 2
        return np.asarray(im.crop((left, top, left + side, top + side)), dtype=np.uint8)


SYNSET = re.compile(r"n\d{8}")
"""What a class folder of an ImageNet tree is called (a WordNet synset id)."""


def class_files(tree: Path, test_classes: list[str], per_class: int, leave_out: set[str],
                class_list: list[str] | None = None,
                say: Callable[[str], None] | None = None) -> dict[str, list[Path]]:
    """Up to `per_class` image files per class folder (sorted; test images by file name left out); every test class
    must be there. The classes: `class_list` when given, else the folders that hold images and are named like
    synsets (n + 8 digits) or like a test class; other sub-folders are skipped and named through `say`."""
    from brainrecon.data.imagenet import IMAGE_SUFFIXES
    tree = Path(tree)
    if not tree.is_dir():
        raise UserError(f"--class-images {tree}: folder does not exist")
    folders = {p.name: p for p in sorted(tree.iterdir()) if p.is_dir()}
    wanted = list(dict.fromkeys(test_classes))
    if class_list is not None:
        absent = [c for c in class_list if c not in folders]
        if absent:
            raise UserError(f"--class-list: {tree} has no folder {absent[0]}"
                            + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""))
        folders = {c: folders[c] for c in dict.fromkeys(class_list + wanted) if c in folders}
    missing = [c for c in wanted if c not in folders]
    if missing:
        raise UserError(f"--class-images {tree}: no folder for test class {missing[0]}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + "; give an ImageNet-style tree holding every test class")
    files, skipped = {}, []
    for name, folder in folders.items():
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in leave_out)
        if not found:
            continue
        if class_list is None and name not in wanted and not SYNSET.fullmatch(name):
            skipped.append(name)
            continue
        files[name] = found[:per_class]
    if not all(c in files for c in test_classes):
        empty = next(c for c in test_classes if c not in files)
        raise UserError(f"--class-images {tree}: the folder of test class {empty} holds no other image")
    if skipped and say:
        say(f"class pool: skipped {len(skipped)} folder(s) not named like a class ({', '.join(skipped[:3])}"
            f"{', ...' if len(skipped) > 3 else ''}); give --class-list FILE to choose the classes")
    return files


def listing_key(files: dict[str, list[Path]], feature: str, side: int) -> str:
    h = hashlib.sha256(f"{feature}|{side}|preprocess-v{PREPROCESS_VERSION}".encode())
    for name, paths in files.items():
        for p in paths:
            st = p.stat()
            h.update(f"{name}/{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def shared_images(class_paths: list[Path], pool_paths: list[Path]) -> list[tuple[Path, Path]]:
    """(class image, unpaired image) pairs that are the same image: the same file name, or (names differing) the
    same bytes (files of equal size compared by SHA-256). Empty when the prototypes share nothing with the pool."""
    by_name = {p.name: p for p in pool_paths}
    shared = [(p, by_name[p.name]) for p in class_paths if p.name in by_name]
    named = {p for p, _ in shared}
    sizes: dict[int, list[Path]] = {}
    for q in pool_paths:
        sizes.setdefault(q.stat().st_size, []).append(q)
    digest: dict[Path, str] = {}

    def sha(path: Path) -> str:
        if path not in digest:
            digest[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return digest[path]
    for p in class_paths:
        if p in named:
            continue
        for q in sizes.get(p.stat().st_size, ()):
            if q.name != p.name and sha(p) == sha(q):
                shared.append((p, q))
                break
    return shared


def prototypes(files: dict[str, list[Path]], features: Features, feature_name: str, side: int, cache_dir: Path,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[str], np.ndarray, bool]:
    """(class names, prototypes (C, D), whether read from the cache). Cached under `cache_dir`, keyed by the tree's
    listing (names, sizes, modification times), the network, the side and the preprocessing version: a changed tree
    is computed afresh."""
    from brainrecon.atomic import write_atomic
    path = Path(cache_dir) / f"prototypes_{feature_name}_{side}px_{listing_key(files, feature_name, side)}.npz"
    names = list(files)
    if path.exists():
        with np.load(path) as z:
            if list(z["classes"]) == names:
                return names, z["prototypes"], True
    protos, total = [], sum(len(v) for v in files.values())
    done = 0
    for name in names:
        images = np.stack([load_square(p, side) for p in files[name]])
        protos.append(extract(features, images).mean(0))
        done += len(images)
        if progress:
            progress(done, total)
    protos = np.stack(protos)
    write_atomic(path, lambda tmp: np.savez(open(tmp, "wb"), classes=np.array(names), prototypes=protos))
    return names, protos, False


# --- the protocol --------------------------------------------------------------------------------------------------

def draw_trials(n_classes: int, true: int, ways: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """(trials, ways - 1) classes drawn without replacement from the pool less the true class."""
    k = ways - 1
    if k == n_classes - 1:                                  # every other class: one trial says it all
        pick = np.broadcast_to(np.arange(k), (trials, k))
    else:
        keys = rng.random((trials, n_classes - 1), dtype=np.float32)
        pick = np.argpartition(keys, k - 1, axis=1)[:, :k]
    return pick + (pick >= true)


def trial_accuracy(dist: np.ndarray, true: np.ndarray, opts: ClassifyOptions) -> dict[tuple[int, int], np.ndarray]:
    """Per image, its accuracy over `opts.trials` trials, for each (n, k). The draws depend on the seed, n and the
    image only (never on the run), so runs on the same images are scored on the same trials."""
    n_img, n_classes = dist.shape
    out = {}
    for ways in opts.ways:
        if ways > n_classes:
            raise UserError(f"--ways {ways} needs {ways} classes but the pool has {n_classes}; pass --ways up to "
                            f"{n_classes}")
        acc = {k: np.zeros(n_img) for k in opts.tops}
        for i in range(n_img):
            rng = np.random.default_rng([opts.seed, ways, i])
            others = dist[i, draw_trials(n_classes, int(true[i]), ways, opts.trials, rng)]     # (trials, n - 1)
            closer = (others <= dist[i, true[i]]).sum(1)
            for k in opts.tops:
                acc[k][i] = (closer < k).mean()
        for k in opts.tops:
            out[(ways, k)] = acc[k]
    return out


def score(run: str, feats: np.ndarray, protos: np.ndarray, true: np.ndarray, opts: ClassifyOptions,
          feature_name: str, labels: dict | None = None) -> list[dict]:
    """One row per (n, k) for one run, with its per-image accuracies (and `labels`, e.g. what the run trained on)."""
    rows = []
    for (ways, k), acc in trial_accuracy(correlation_distance(feats, protos, cross=True), true, opts).items():
        lo, hi = bootstrap_ci(acc, np.random.default_rng([opts.seed, ways, k]))
        rows.append({"run": run, "features": feature_name, "ways": ways, "top": k, "mean": float(acc.mean()),
                     "ci_low": lo, "ci_high": hi, "chance": min(1.0, k / ways), "trials": opts.trials,
                     "images": len(acc), **(labels or {}), "per_image": acc})
    return rows
