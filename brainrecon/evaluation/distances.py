"""Distances between reconstructions and candidate images, one matrix per metric (reconstructions x pool, pool
features extracted once), the semantic protocol and the depth errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainrecon.config import ALL_METRICS
from brainrecon.data import layout
from brainrecon.errors import UserError

WEIGHT_FREE = ("pixcorr", "ssim")
CLASSIFIER = "effnet-lite0"  # named in every semantic-50way row


def _float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def pixcorr_distance(recon: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """1 - Pearson r of flattened pixels, (N, M)."""
    a, b = _float(recon).flatten(1).double(), _float(pool).flatten(1).double()
    a = (a - a.mean(1, keepdim=True)) / (a.std(1, keepdim=True) + 1e-8)
    b = (b - b.mean(1, keepdim=True)) / (b.std(1, keepdim=True) + 1e-8)
    return (1 - (a @ b.T) / (a.shape[1] - 1)).numpy()


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2).float() ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_distance(recon: np.ndarray, pool: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """1 - SSIM (Gaussian 11x11 window, sigma 1.5, on [0, 1] images, averaged over channels), (N, M)."""
    x, y = _float(recon), _float(pool)
    c = x.shape[1]
    win = _gauss_window().repeat(c, 1, 1, 1)
    blur = lambda t: F.conv2d(t, win, groups=c)                                         # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    n, m = len(x), len(y)
    pairs = torch.cartesian_prod(torch.arange(n), torch.arange(m))
    out = torch.empty(n * m)
    for s in range(0, len(pairs), chunk):
        i, j = pairs[s:s + chunk, 0], pairs[s:s + chunk, 1]
        cov = blur(x[i] * y[j]) - mx[i] * my[j]
        ssim = ((2 * mx[i] * my[j] + c1) * (2 * cov + c2)) / ((mx[i] ** 2 + my[j] ** 2 + c1) * (vx[i] + vy[j] + c2))
        out[s:s + chunk] = ssim.flatten(1).mean(1)
    return (1 - out.view(n, m)).numpy()


_POOL_FEATURES: dict = {}
POOL_CACHE_ITEMS = 4
"""Features of the last few candidate pools, by network and content: runs scored together share their ground truth,
whose features are then computed once (the same values)."""


def _perceptual_distance(net, recon: np.ndarray, pool: np.ndarray, chunk: int = 64) -> np.ndarray:
    import hashlib
    from brainrecon.losses import unit_channels
    with torch.no_grad():
        def feats(images):
            fs = [net(_float(images[i:i + chunk])) for i in range(0, len(images), chunk)]
            return {k: unit_channels(torch.cat([f[k] for f in fs])) for k in fs[0]}
        key = (id(net), pool.shape, hashlib.sha1(np.ascontiguousarray(pool).tobytes()).hexdigest())
        if key not in _POOL_FEATURES:
            while len(_POOL_FEATURES) >= POOL_CACHE_ITEMS:
                _POOL_FEATURES.pop(next(iter(_POOL_FEATURES)))
            _POOL_FEATURES[key] = feats(pool)
        fa, fb = feats(recon), _POOL_FEATURES[key]
        total = 0
        for k in fa:  # mean over layers of (1 - channel cosine), averaged over locations
            a, b = fa[k].flatten(2), fb[k].flatten(2)                                   # (N, C, L), (M, C, L)
            total = total + (1 - torch.einsum("ncl,mcl->nm", a, b) / a.shape[2])
        return (total / len(fa)).numpy()


def semantic_identification(recon: np.ndarray, truth: np.ndarray, ways: int, repeats: int,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """MinD-Vis-style n-way semantic identification: the classifier's top-1 class of the ground truth against n - 1
    random other classes; correct when the reconstruction's probability is highest for the truth's class."""
    from brainrecon.models.effnet import load_effnet_lite0, preprocess
    net = _cached("effnet-classifier", load_effnet_lite0)
    with torch.no_grad():
        logits = lambda x: torch.cat([net(preprocess(_float(x[i:i + 50]))) for i in range(0, len(x), 50)])  # noqa
        target = logits(truth).argmax(1).numpy()
        probs = torch.softmax(logits(recon), 1).numpy()
    n_classes = probs.shape[1]
    keys = rng.random((len(recon), repeats, n_classes - 1))
    pick = np.argpartition(keys, ways - 2, axis=2)[..., :ways - 1]
    pick = pick + (pick >= target[:, None, None])                                     # skip the true class
    true_p = probs[np.arange(len(recon)), target][:, None, None]
    other = np.take_along_axis(probs[:, None, :].repeat(repeats, 1), pick, axis=2)
    return (other < true_p).all(2).mean(1), (other > true_p).sum(2).mean(1) / (ways - 1)


_CACHE: dict = {}


def _cached(key: str, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _perceptual_net(metric: str, data_root: Path):
    if metric == "perceptual-effnet":
        from brainrecon.models.effnet import EffNetFeatures
        return _cached("effnet-features", EffNetFeatures)
    from brainrecon.models.perceptual import build_perceptual_net
    from brainrecon.models.vgg import imagenet_vgg_cached
    if metric == "perceptual-vgg":
        if not imagenet_vgg_cached("vgg16"):
            raise UserError("metric perceptual-vgg needs torchvision's ImageNet VGG16 weights, which are not cached; "
                            "run once with internet (torchvision downloads them) or drop --metric perceptual-vgg")
        return build_perceptual_net("vgg16-imagenet", "rgb", data_root)
    path = layout.release_vgg_file(data_root, "vgg16", "depth", large=False)
    if not path.exists():
        raise UserError(f"metric depth-perceptual needs {path}; run `brainrecon fetch-data --only vgg` or drop it")
    from brainrecon.models.perceptual import PerceptualNet
    from brainrecon.models.vgg import load_release_vgg
    return PerceptualNet(load_release_vgg(path, "vgg16", 1), "depth", "vgg16-release-depth")


def metric_available(metric: str, channel: str, data_root: Path) -> bool:
    from brainrecon.models.vgg import imagenet_vgg_cached
    if metric in WEIGHT_FREE or metric == "perceptual-effnet":
        return True
    if metric == "semantic-50way":
        return channel == "rgb"
    if metric == "perceptual-vgg":
        return channel == "rgb" and imagenet_vgg_cached("vgg16")
    if metric == "depth-perceptual":
        return channel == "depth" and layout.release_vgg_file(data_root, "vgg16", "depth", large=False).exists()
    return False


def distance_matrix(metric: str, recon: np.ndarray, pool: np.ndarray, data_root: Path | None = None) -> np.ndarray:
    if metric == "pixcorr":
        return pixcorr_distance(recon, pool)
    if metric == "ssim":
        return ssim_distance(recon, pool)
    if metric in ("perceptual-vgg", "depth-perceptual", "perceptual-effnet"):
        return _perceptual_distance(_perceptual_net(metric, data_root or layout.data_dir()), recon, pool)
    if metric == "lpips-alex":
        raise UserError("metric lpips-alex needs the `lpips` package and torchvision AlexNet weights, not available "
                        "here; `pip install lpips` on a machine with internet, or drop --metric lpips-alex")
    raise UserError(f"--metric {metric!r} is unknown; choose from {', '.join(ALL_METRICS)}")


def depth_errors(recon: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image monocular-depth errors after median scaling. Inputs are the stored uint8 relative inverse-depth maps,
    mapped to (0, 1] as (v + 1) / 256 so that no value is zero."""
    p = (recon[..., 0].reshape(len(recon), -1).astype(np.float64) + 1) / 256
    g = (truth[..., 0].reshape(len(truth), -1).astype(np.float64) + 1) / 256
    p = p * (np.median(g, 1, keepdims=True) / np.median(p, 1, keepdims=True))
    ratio = np.maximum(p / g, g / p)
    d = np.log(p) - np.log(g)
    return {"abs_rel": (np.abs(p - g) / g).mean(1), "rmse": np.sqrt(((p - g) ** 2).mean(1)),
            "delta_1.25": (ratio < 1.25).mean(1), "delta_1.25^2": (ratio < 1.25 ** 2).mean(1),
            "delta_1.25^3": (ratio < 1.25 ** 3).mean(1),
            "silog": np.sqrt(np.maximum((d ** 2).mean(1) - d.mean(1) ** 2, 0)) * 100}
