"""evaluate: n-way identification (% correct and rank) with bootstrap CIs, depth errors, tables and a plot.

Each metric's distance matrix (reconstructions x candidate pool) is computed once, pool features extracted once,
and every repeat is drawn from that matrix, vectorised. Public surface: `identification` over a distance matrix,
`distance_matrix` per metric, `evaluate_runs` for files.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainrecon.atomic import write_text_atomic
from brainrecon.config import ALL_METRICS
from brainrecon.data import imagenet, layout
from brainrecon.errors import UserError

WEIGHT_FREE = ("pixcorr", "ssim")
CLASSIFIER = "effnet-lite0"  # named in every semantic-50way row
COLUMNS = ("run", "subject", "modality", "channel", "metric", "distractors", "ways", "mode", "mean", "ci_low",
           "ci_high", "chance", "n_images", "repeats", "seed")


# --- identification over a distance matrix ---------------------------------------------------------------------

def identification(dist: np.ndarray, ways: int, repeats: int, rng: np.random.Generator,
                   distractors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (% correct, normalised rank) of n-way identification.

    dist (N, M): distance of reconstruction i to candidate j; the true candidate of i is column i. Distractors are
    drawn without replacement for every repeat from the columns != i (distractors=None) or from the given columns.
    Correct: the truth is strictly closer than every distractor. Rank: distractors closer than the truth (ties count
    half) divided by n - 1 (0 = best, chance 0.5).
    """
    n = dist.shape[0]
    k = ways - 1
    if distractors is None:
        if k > dist.shape[1] - 1:
            raise UserError(f"--ways {ways} needs {ways} candidates but there are only {dist.shape[1]} test images")
        # column choices excluding i: draw from 0..M-2 and shift the values >= i by one
        keys = rng.random((n, repeats, dist.shape[1] - 1))
        pick = np.argpartition(keys, k - 1, axis=2)[..., :k] if k < keys.shape[2] else np.argsort(keys, axis=2)
        pick = pick + (pick >= np.arange(n)[:, None, None])
    else:
        if k > len(distractors):
            raise UserError(f"--ways {ways} needs {k} distractors but the pool has only {len(distractors)}")
        keys = rng.random((n, repeats, len(distractors)))
        pick = distractors[np.argpartition(keys, k - 1, axis=2)[..., :k] if k < keys.shape[2]
                           else np.argsort(keys, axis=2)]
    true_d = dist[np.arange(n), np.arange(n)][:, None, None]                          # (N, 1, 1)
    other = np.take_along_axis(dist[:, None, :].repeat(repeats, 1), pick, axis=2)   # (N, R, k)
    correct = (other > true_d).all(axis=2).mean(1)
    rank = ((other < true_d).sum(2) + 0.5 * (other == true_d).sum(2)).mean(1) / k
    return correct, rank


def exhaustive_two_way(dist: np.ndarray) -> np.ndarray:
    """Per image: the fraction of other test images j with d(i, i) < d(i, j) (the NSD-style exhaustive 2-way)."""
    n = dist.shape[0]
    true_d = np.diag(dist[:, :n])[:, None]
    mask = ~np.eye(n, dtype=bool)
    wins = (dist[:, :n] > true_d) + 0.5 * (dist[:, :n] == true_d)
    return (wins * mask).sum(1) / (n - 1)


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float]:
    idx = rng.integers(0, len(values), (n_boot, len(values)))
    means = values[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# --- distances -------------------------------------------------------------------------------------------------

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


def _perceptual_distance(net, recon: np.ndarray, pool: np.ndarray, chunk: int = 64) -> np.ndarray:
    from brainrecon.losses import unit_channels
    with torch.no_grad():
        def feats(images):
            fs = [net(_float(images[i:i + chunk])) for i in range(0, len(images), chunk)]
            return {k: unit_channels(torch.cat([f[k] for f in fs])) for k in fs[0]}
        fa, fb = feats(recon), feats(pool)
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


# --- depth errors ------------------------------------------------------------------------------------------------

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


# --- runs -> tables ------------------------------------------------------------------------------------------------

@dataclass
class EvalOptions:
    ways: tuple[int, ...] = (2, 5, 10)
    metrics: tuple[str, ...] = ()
    repeats: int = 100
    mode: str = "both"
    seed: int = 0
    distractors: str = "test"
    pool_size: int = 1000
    exhaustive: bool = False

    def __post_init__(self):
        if self.mode not in ("percent", "rank", "both"):
            raise UserError(f"--mode {self.mode!r}; choose percent, rank or both")
        if self.repeats < 1:
            raise UserError(f"--repeats {self.repeats} must be at least 1")
        bad = [m for m in self.metrics if m not in ALL_METRICS]
        if bad:
            raise UserError(f"--metric {bad[0]!r} is unknown; choose from {', '.join(ALL_METRICS)}")


def channels_of(modality: str) -> list[str]:
    return {"rgb": ["rgb"], "depth": ["depth"], "rgbd": ["rgb", "depth"]}[modality]


def _channel(images: np.ndarray, channel: str) -> np.ndarray:
    if channel == "rgb":
        return images[..., :3]
    return images[..., -1:]


def _distractor_pool(opts: EvalOptions, data_root: Path, size: int, channel: str) -> np.ndarray | None:
    if opts.distractors == "test":
        return None
    root = layout.unpaired_image_dir(data_root) if opts.distractors == "imagenet" else Path(opts.distractors)
    files = imagenet.list_images(root)
    rng = np.random.default_rng(opts.seed)
    pick = np.sort(rng.choice(len(files), size=min(opts.pool_size, len(files)), replace=False))
    if channel == "rgb":
        return np.stack([imagenet.load_image(files[i], size, "RGB") for i in pick])
    depth_dir = layout.unpaired_depth_dir(data_root, "large") if opts.distractors == "imagenet" \
        else Path(str(root).rstrip("/") + "_depth")
    depths = imagenet.list_depth_pngs(depth_dir, len(files))
    return np.stack([imagenet.load_image(depths[i], size, "L") for i in pick])


def _records(base: dict, ways: int, correct: np.ndarray, rank: np.ndarray, opts: EvalOptions,
             rng: np.random.Generator) -> list[dict]:
    """The % correct and rank rows (as --mode asks) of one run x channel x metric x ways, with bootstrap CIs."""
    rows = []
    for mode, scores, chance in (("percent", correct, 1 / ways), ("rank", rank, 0.5)):
        if opts.mode in (mode, "both"):
            lo, hi = bootstrap_ci(scores, rng)
            rows.append({**base, "ways": ways, "mode": mode, "mean": float(scores.mean()), "ci_low": lo,
                         "ci_high": hi, "chance": chance, "repeats": opts.repeats, "per_image": scores})
    return rows


def evaluate_runs(recons: list[dict], opts: EvalOptions, data_root: Path | None = None) -> tuple[list, list]:
    """Identification records and depth-error records for every run x channel x metric x ways x mode."""
    data_root = Path(data_root) if data_root else layout.data_dir()
    records, depth_records = [], []
    pools: dict = {}
    for rec in recons:
        modality = str(rec["modality"])
        run, subject = str(rec["run"]), int(rec.get("subject", -1))
        n_images = len(rec["reconstructions"])
        for w in opts.ways:
            if opts.distractors == "test" and not 2 <= w <= n_images:
                raise UserError(f"--ways {w} must lie in 2..{n_images} (the number of test images)")
            if w < 2:
                raise UserError(f"--ways {w} must be at least 2")
        for channel in channels_of(modality):
            recon, truth = _channel(rec["reconstructions"], channel), _channel(rec["ground_truth"], channel)
            test_set = hashlib.sha256(np.ascontiguousarray(truth).tobytes()).hexdigest()[:16]  # pairs runs (compare.py)
            key = (channel, truth.shape[1])
            if key not in pools:
                pools[key] = _distractor_pool(opts, data_root, truth.shape[1], channel)
            extra = pools[key]
            pool = truth if extra is None else np.concatenate([truth, extra])
            distractors = None if extra is None else np.arange(n_images, len(pool))
            metrics = opts.metrics or tuple(m for m in ALL_METRICS if metric_available(m, channel, data_root))
            for metric in metrics:
                if metric in ("perceptual-vgg", "semantic-50way") and channel != "rgb" or \
                        metric == "depth-perceptual" and channel != "depth":
                    continue
                base = {"run": run, "subject": subject, "modality": modality, "channel": channel, "metric": metric,
                        "distractors": opts.distractors if opts.distractors in ("test", "imagenet")
                        else Path(opts.distractors).name, "n_images": n_images, "seed": opts.seed,
                        "test_set": test_set}
                if metric == "semantic-50way":  # classes, not images, are the candidates: always 50-way
                    rng = np.random.default_rng([opts.seed, 50])
                    correct, rank = semantic_identification(recon, truth, 50, opts.repeats, rng)
                    base.update(metric=f"semantic-50way/{CLASSIFIER}", distractors="imagenet-classes")
                    records += _records(base, 50, correct, rank, opts, rng)
                    continue
                dist = distance_matrix(metric, recon, pool, data_root)
                for w in opts.ways:
                    rng = np.random.default_rng([opts.seed, w])
                    correct, rank = identification(dist, w, opts.repeats, rng, distractors)
                    records += _records(base, w, correct, rank, opts, rng)
                if opts.exhaustive and opts.distractors == "test":
                    scores = exhaustive_two_way(dist)
                    lo, hi = bootstrap_ci(scores, np.random.default_rng(opts.seed))
                    records.append({**base, "ways": 2, "mode": "percent", "mean": float(scores.mean()), "ci_low": lo,
                                    "ci_high": hi, "chance": 0.5, "repeats": 0, "distractors": "test-exhaustive",
                                    "per_image": scores})
            if channel == "depth":
                rng = np.random.default_rng(opts.seed)
                for name, values in depth_errors(recon, truth).items():
                    lo, hi = bootstrap_ci(values, rng)
                    depth_records.append({"run": run, "subject": subject, "modality": modality, "metric": name,
                                          "mean": float(values.mean()), "ci_low": lo, "ci_high": hi,
                                          "n_images": n_images})
    return records, depth_records


def write_outputs(records: list, depth_records: list, out: Path, comparisons: list | None = None,
                  suite_rows: list | None = None) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "identification.csv", "json": out / "identification.json",
             "png": out / "identification.png"}

    def to_csv(rows, cols) -> str:
        import io
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    write_text_atomic(paths["csv"], to_csv(records, COLUMNS))
    write_text_atomic(paths["json"], json.dumps([{k: r[k] for k in COLUMNS} for r in records], indent=1))
    if comparisons:
        from brainrecon.compare import COLUMNS as PAIRED
        paths["comparisons_csv"], paths["comparisons_json"] = out / "comparisons.csv", out / "comparisons.json"
        write_text_atomic(paths["comparisons_csv"], to_csv(comparisons, PAIRED))
        write_text_atomic(paths["comparisons_json"], json.dumps(comparisons, indent=1))
    if suite_rows:
        cols = ("run", "subject", "metric", "mean", "better", "n_images", "source", "unavailable")
        paths["nsd_suite_csv"], paths["nsd_suite_json"] = out / "nsd_suite.csv", out / "nsd_suite.json"
        write_text_atomic(paths["nsd_suite_csv"], to_csv(suite_rows, cols))
        write_text_atomic(paths["nsd_suite_json"], json.dumps(
            [{**{k: r[k] for k in cols}, "per_image": [float(v) for v in r.get("per_image", [])]}
             for r in suite_rows], indent=1))
    if depth_records:
        paths["depth_csv"] = out / "depth_metrics.csv"
        write_text_atomic(paths["depth_csv"], to_csv(depth_records, list(depth_records[0])))
    from brainrecon.viz import plot_identification
    plot_identification(records, paths["png"])
    return paths
