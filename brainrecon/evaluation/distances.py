"""Distances between reconstructions and candidate images, one matrix per metric (reconstructions x pool, pool
features extracted once), the semantic protocol and the depth errors.

Every metric declared in brainrecon/metric_specs.py is bound here to its function with `@distance(name)`: a weight-free
one is `fn(recon, pool)`, one with a network `fn(recon, pool, net)`, the network built by `metric_network` through
models/perceptual.py (the one door to the perceptual networks); the semantic protocol (`candidates="classes"`) is
`fn(recon, truth, ways, repeats, rng)`. Dispatch, availability and the network all read the declaration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from brainrecon.correlation import pearson
from brainrecon.data import layout
from brainrecon.data.transforms import to_float
from brainrecon.errors import UserError
from brainrecon.losses import unit_channels
from brainrecon.metric_specs import METRIC_NAMES, MetricSpec, metric_spec
from brainrecon.models.effnet import INPUT_SIZE, load_effnet_lite0, preprocess
from brainrecon.models.perceptual import build_perceptual_net, missing_weights

METRIC_FUNCTIONS: dict[str, Callable] = {}
"""Metric name -> its function; filled by `@distance` below, one entry per name of metric_specs.METRICS."""


def distance(*names: str):
    """Binds the decorated function to declared metric names (an undeclared name is a bug, raised at import)."""
    def bind(fn):
        for name in names:
            if name not in METRIC_NAMES:
                raise KeyError(f"@distance({name!r}): declare it in brainrecon/metric_specs.py first")
            METRIC_FUNCTIONS[name] = fn
        return fn
    return bind


def channel_of(images: np.ndarray) -> str:
    """(N, H, W, 3) -> rgb, (N, H, W, 1) -> depth."""
    return "rgb" if images.shape[-1] == 3 else "depth"


@distance("pixcorr")
def pixcorr_distance(recon: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """1 - Pearson r of flattened pixels, (N, M)."""
    return (1 - pearson(to_float(recon).flatten(1).double(), to_float(pool).flatten(1).double(), cross=True)).numpy()


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2).float() ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


@distance("ssim")
def ssim_distance(recon: np.ndarray, pool: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """1 - SSIM (Gaussian 11x11 window, sigma 1.5, on [0, 1] images, averaged over channels), (N, M)."""
    x, y = to_float(recon), to_float(pool)
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


@distance("perceptual-effnet", "perceptual-vgg", "depth-perceptual")
def perceptual_distance(recon: np.ndarray, pool: np.ndarray, net, chunk: int = 64) -> np.ndarray:
    """Mean over the network's taps of (1 - channel cosine of unit-normalised features), averaged over locations."""
    with torch.no_grad():
        def feats(images):
            fs = [net(to_float(images[i:i + chunk])) for i in range(0, len(images), chunk)]
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


@distance("semantic-50way")
def semantic_identification(recon: np.ndarray, truth: np.ndarray, ways: int, repeats: int,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """MinD-Vis-style n-way semantic identification: the classifier's top-1 class of the ground truth against n - 1
    random other classes; correct when the reconstruction's probability is highest for the truth's class."""
    net = _cached("effnet-classifier", load_effnet_lite0)
    with torch.no_grad():
        logits = lambda x: torch.cat([net(preprocess(to_float(x[i:i + 50]))) for i in range(0, len(x), 50)])  # noqa
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


def _cached(key, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def metric_network(spec: MetricSpec, channel: str, data_root: Path):
    """The network a metric needs for a channel, built once per process; never downloaded here: missing weights stop
    with one line. Metrics use the release's small depth VGG16 and feed EfficientNet-Lite0 at its 224 px."""
    def build():
        missing = missing_weights(spec.network, channel, data_root, large=False)
        if missing:
            raise UserError(f"metric {spec.name} needs {missing}; or drop --metric {spec.name}")
        return build_perceptual_net(spec.network, channel, data_root, input_size=INPUT_SIZE, large=False)
    return _cached((spec.network, channel, str(data_root)), build)


def metric_available(metric: str, channel: str, data_root: Path) -> bool:
    """The metric scores this channel and its network's weights are here (nothing is downloaded to find out)."""
    spec = metric_spec(metric)
    return channel in spec.channels and (spec.network is None or
                                         missing_weights(spec.network, channel, data_root, large=False) is None)


def distance_matrix(metric: str, recon: np.ndarray, pool: np.ndarray, data_root: Path | None = None) -> np.ndarray:
    """(N, M) distances of one image-candidate metric between reconstructions and the candidate pool."""
    spec = metric_spec(metric)
    if spec.candidates != "images":
        raise ValueError(f"{metric} picks among {spec.candidates}, not images: it has no distance matrix")
    if spec.network is None:
        return METRIC_FUNCTIONS[metric](recon, pool)
    net = metric_network(spec, channel_of(recon), Path(data_root) if data_root else layout.data_dir())
    return METRIC_FUNCTIONS[metric](recon, pool, net)


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
