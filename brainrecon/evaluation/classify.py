"""classify: large-scale semantic classification of reconstructions (Gaziv, Beliy, Granot et al., NeuroImage 2022).

The protocol, as the authors' released evaluation describes it:
- features: torchvision's ImageNet AlexNet up to the ReLU after its 4th conv (`features[:10]`, 256 x 6 x 6 = 9,216
  values at 112 px), the reconstruction fed as it is, pixels scaled to [-1, 1], no mean/std normalisation;
- class prototypes: the mean of those features over up to `per_class` images of each class (the mean of features,
  not the features of a mean image); the class pool is every class folder of the image tree (the test classes, and
  the rest: ~1,000 classes for ILSVRC-2012); a test image found in its own class folder (same file name) is left out;
- distance: 1 - Pearson r between a reconstruction's features and each prototype;
- a trial: the true class plus n - 1 classes drawn at random from the rest of the pool; correct at top-k when fewer
  than k of the drawn classes are at least as close as the true class (ties count against it); `trials` per image.
Scores: per image its accuracy over the trials; per run the mean over images with a bootstrap 95 % CI over images;
chance k / n. Class images are resized (shorter side) and centre-cropped to the reconstructions' side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from brainrecon.errors import UserError
from brainrecon.evaluation.statistics import bootstrap_ci

FEATURES = ("alexnet", "effnet-lite0")
STAND_IN = {"effnet-lite0": "the EfficientNet-Lite0 that ships with brainrecon (its last feature map), a stand-in "
                            "for the paper's AlexNet conv4"}
Features = Callable[[torch.Tensor], torch.Tensor]
"""[0, 1] images (N, 3, H, W) -> features (N, D)."""


@dataclass(frozen=True)
class ClassifyOptions:
    ways: tuple[int, ...] = (50, 100, 500, 1000)
    tops: tuple[int, ...] = (1, 5)
    trials: int = 1000
    seed: int = 0
    per_class: int = 100

    def __post_init__(self):
        if min(self.ways) < 2 or min(self.tops) < 1 or self.trials < 1 or self.per_class < 1:
            raise UserError("--ways must be at least 2, --top, --trials and --per-class at least 1")


# --- feature networks ----------------------------------------------------------------------------------------------

def feature_network(name: str, device) -> Features:
    """The paper's AlexNet conv4 (torchvision's weights, fetched and hash-checked on first use) or the shipped
    EfficientNet-Lite0; offline without AlexNet's weights: one line, never a random network."""
    if name == "alexnet":
        from torchvision.models import AlexNet_Weights, alexnet
        try:
            net = alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)
        except Exception as e:  # noqa: BLE001 - URLError, HTTPError, socket errors
            raise UserError(f"torchvision's ImageNet AlexNet weights are not in the torch hub cache "
                            f"({torch.hub.get_dir()}) and could not be downloaded ({type(e).__name__}); connect to "
                            "the internet once, or use --features effnet-lite0 (shipped, a stand-in)") from None
        conv4 = net.features[:10].eval().to(device)
        return lambda x: conv4(x.to(device) * 2 - 1).flatten(1)
    if name == "effnet-lite0":
        from brainrecon.models.effnet import load_effnet_lite0
        net = load_effnet_lite0().eval().to(device)
        return lambda x: net.forward_features((x.to(device) - 0.5) / 0.5).flatten(1)
    raise UserError(f"--features {name!r}: choose one of {', '.join(FEATURES)}")


@torch.no_grad()
def extract(features: Features, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float64 features (N, D)."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).permute(0, 3, 1, 2).float() / 255
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


def class_files(tree: Path, test_classes: list[str], per_class: int, leave_out: set[str]) -> dict[str, list[Path]]:
    """Up to `per_class` image files per class folder (sorted; test images by file name left out); every test class
    must be there."""
    from brainrecon.data.imagenet import IMAGE_SUFFIXES
    tree = Path(tree)
    if not tree.is_dir():
        raise UserError(f"--class-images {tree}: folder does not exist")
    folders = {p.name: p for p in sorted(tree.iterdir()) if p.is_dir()}
    missing = [c for c in dict.fromkeys(test_classes) if c not in folders]
    if missing:
        raise UserError(f"--class-images {tree}: no folder for test class {missing[0]}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + "; give an ImageNet-style tree holding every test class")
    files = {}
    for name, folder in folders.items():
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in leave_out)
        if found:
            files[name] = found[:per_class]
    if not all(c in files for c in test_classes):
        empty = next(c for c in test_classes if c not in files)
        raise UserError(f"--class-images {tree}: the folder of test class {empty} holds no other image")
    return files


def listing_key(files: dict[str, list[Path]], feature: str, side: int) -> str:
    h = hashlib.sha256(f"{feature}|{side}".encode())
    for name, paths in files.items():
        for p in paths:
            st = p.stat()
            h.update(f"{name}/{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def prototypes(files: dict[str, list[Path]], features: Features, feature_name: str, side: int, cache_dir: Path,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[str], np.ndarray, bool]:
    """(class names, prototypes (C, D), whether read from the cache). Cached under `cache_dir`, keyed by the tree's
    listing (names, sizes, modification times), the network and the side: a changed tree is computed afresh."""
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

def correlation_distance(feats: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """1 - Pearson r between each row of `feats` (N, D) and each prototype (C, D) -> (N, C)."""
    a = feats - feats.mean(1, keepdims=True)
    b = protos - protos.mean(1, keepdims=True)
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return 1 - a @ b.T


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
          feature_name: str) -> list[dict]:
    """One row per (n, k) for one run, with its per-image accuracies."""
    rows = []
    for (ways, k), acc in trial_accuracy(correlation_distance(feats, protos), true, opts).items():
        lo, hi = bootstrap_ci(acc, np.random.default_rng([opts.seed, ways, k]))
        rows.append({"run": run, "features": feature_name, "ways": ways, "top": k, "mean": float(acc.mean()),
                     "ci_low": lo, "ci_high": hi, "chance": min(1.0, k / ways), "trials": opts.trials,
                     "images": len(acc), "per_image": acc})
    return rows
