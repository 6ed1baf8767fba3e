"""A simulated subject, written in exactly the release formats, so every command runs on it unchanged.

Stimuli: procedural RGBD scenes (dead-leaves model): a sky and a textured ground plane whose depth grows towards the
horizon, occluded by textured, shaded shapes of power-law sizes, each standing at its own depth, painted far to near.
The depth channel is true depth, stored as MiDaS stores its output: inverse depth, min-max scaled per image to uint8.

Voxels: a fixed, seeded ground-truth encoding model. Feature maps (luminance, colour opponency, multi-scale oriented
energy, nearness and depth edges) are pooled by retinotopic Gaussian receptive fields that grow from V1 to the higher
ROIs, mixed with ROI-specific feature preferences, then z-scored. Single trials add Gaussian noise (plus a weak global
component) so that each voxel has a drawn single-trial reliability (median ~0.2 across voxels; a fraction carries no
signal). Noise ceiling and SNR are then estimated from the 35 test repeats, as for the real data.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from brainrecon.atomic import write_atomic, write_text_atomic
from brainrecon.config import ROIS
from brainrecon.data import layout, release
from brainrecon.errors import ConfigError

# ROI name -> (share of voxels, RF sigma as a fraction of the image side, feature preference profile)
ROI_SPECS = {
    "V1": (0.24, 0.035, "early"), "V2": (0.18, 0.05, "early"), "V3": (0.14, 0.07, "early"),
    "V4": (0.12, 0.10, "mid"), "LOC": (0.10, 0.16, "high"), "FFA": (0.08, 0.20, "high"),
    "PPA": (0.09, 0.20, "high"),
}
OUTSIDE_VC = 0.05  # voxels in the file that belong to no visual ROI (noise only), as V_all > VC in the real files
FEATURES = ("lum", "rg", "by", *(f"energy_s{s}_o{o}" for s in (0, 1) for o in range(4)), "near", "depth_edge")
# Relative feature weights per profile, in FEATURES order.
PROFILES = {
    "early": [1.0, 0.8, 0.6, *[1.2] * 4, *[0.6] * 4, 0.3, 0.3],
    "mid": [0.6, 1.2, 1.0, *[0.5] * 4, *[1.0] * 4, 0.6, 0.6],
    "high": [0.4, 0.5, 0.5, *[0.2] * 4, *[0.8] * 4, 1.5, 1.2],
}
FEATURE_RES = 28


@dataclass
class SimulationConfig:
    subject: int = 3
    seed: int = 0
    n_voxels: int = 4500
    n_unpaired: int = 10000
    resolution: int = 112
    n_train: int = 1200
    n_test: int = 50
    n_repeats: int = 35
    n_classes: int = 100
    median_reliability: float = 0.2
    null_fraction: float = 0.2

    def __post_init__(self):
        if self.resolution < 16 or self.resolution % 8:
            raise ConfigError(f"--resolution {self.resolution} must be a multiple of 8, at least 16")
        if self.n_voxels < 50:
            raise ConfigError(f"--n-voxels {self.n_voxels} is too small; use at least 50")
        if self.n_unpaired < 1 or self.n_train < 10 or self.n_test < 10:
            raise ConfigError("need at least 1 unpaired, 10 train and 10 test images")
        if self.n_repeats < 2:
            raise ConfigError("--n-repeats must be at least 2 (the noise ceiling needs repeats)")


# ---------------------------------------------------------------------------------------------------------------
# Scenes


def render_scenes(n: int, res: int, gen: torch.Generator, batch: int = 128) -> np.ndarray:
    """`n` dead-leaves RGBD scenes as uint8 (n, res, res, 4): RGB + inverse depth min-max scaled per image."""
    return np.concatenate([_render_batch(min(batch, n - i), res, gen) for i in range(0, n, batch)])


def _u(gen, *shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen)


def _render_batch(b: int, res: int, gen: torch.Generator, n_shapes: int = 18) -> np.ndarray:
    coords = (torch.arange(res) + 0.5) / res
    yy, xx = coords.view(1, res, 1), coords.view(1, 1, res)                        # broadcast to (B, R, R)
    # Horizon: anywhere from high to low, tilted; a quarter of the scenes look down at the ground only (no sky).
    horizon = torch.where(_u(gen, b, 1, 1) < 0.25, _u(gen, b, 1, 1, lo=-0.6, hi=0.0), _u(gen, b, 1, 1, lo=0.15, hi=0.8))
    tilt = _u(gen, b, 1, 1, lo=-0.35, hi=0.35)
    horizon_at = horizon + tilt * (xx - 0.5)                                         # (B, 1, R)
    below = (yy - horizon_at).clamp_min(1e-3)
    ground_z = (1.2 / below).clamp(1.0, 60.0)
    sky_z = torch.full((b, res, res), 80.0)
    z = torch.where(yy > horizon_at, ground_z, sky_z)                                # (B, R, R) distance
    sky = torch.stack([_u(gen, b, lo=0.35, hi=0.7), _u(gen, b, lo=0.55, hi=0.85), _u(gen, b, lo=0.75, hi=1.0)], 1)
    ground = _u(gen, b, 3, lo=0.15, hi=0.6) * torch.tensor([1.0, 0.9, 0.7])
    freq, phase = _u(gen, b, 1, 1, lo=2, hi=8), _u(gen, b, 1, 1, hi=2 * math.pi)
    ground_tex = 1 + 0.25 * torch.sin(2 * math.pi * freq * (xx - 0.5) * 0.4 / below * 0.1 + phase) \
        * torch.sin(2 * math.pi * 0.3 / below + phase)
    sky_img = sky.view(b, 3, 1, 1) * (1.1 - 0.3 * (yy / horizon_at.clamp_min(0.05)).clamp(max=1)).unsqueeze(1)
    ground_img = ground.view(b, 3, 1, 1) * ground_tex.unsqueeze(1)
    img = torch.where((yy > horizon_at).unsqueeze(1), ground_img, sky_img).expand(b, 3, res, res).clone()

    # Shapes: power-law radii (dead leaves), standing on the ground where their base is below the horizon.
    radius = (0.04 * (1 - _u(gen, b, n_shapes)).pow(-1 / 2.0)).clamp(max=0.45)
    cx, cy = _u(gen, b, n_shapes, lo=-0.1, hi=1.1), _u(gen, b, n_shapes, lo=0.05, hi=1.1)
    aspect, angle = _u(gen, b, n_shapes, lo=0.5, hi=1.6), _u(gen, b, n_shapes, hi=math.pi)
    base = (cy + radius * aspect - (horizon.view(b, 1) + tilt.view(b, 1) * (cx - 0.5))).clamp_min(0.02)
    shape_z = (1.2 / base).clamp(1.0, 40.0) * _u(gen, b, n_shapes, lo=0.9, hi=1.1)
    is_box = _u(gen, b, n_shapes) < 0.4
    colour = _u(gen, b, n_shapes, 3).pow(1.3)
    tex_f, tex_o = _u(gen, b, n_shapes, lo=3, hi=22), _u(gen, b, n_shapes, hi=math.pi)
    tex_a, tex_p = _u(gen, b, n_shapes, hi=0.4), _u(gen, b, n_shapes, hi=2 * math.pi)
    light = _u(gen, b, 2, lo=-1, hi=1)
    order = torch.argsort(shape_z, dim=1, descending=True)                          # paint far to near
    for k in range(n_shapes):
        i = order[:, k]
        pick = lambda t: t.gather(1, i.view(b, 1)).view(b, 1, 1)                      # noqa: E731
        r, a, th, zk = pick(radius), pick(aspect), pick(angle), pick(shape_z)
        dx, dy = xx - pick(cx), yy - pick(cy)
        u = (dx * torch.cos(th) + dy * torch.sin(th)) / r
        v = (-dx * torch.sin(th) + dy * torch.cos(th)) / (r * a)
        box = pick(is_box.float()) > 0.5
        dist = torch.where(box, torch.maximum(u.abs(), v.abs()), torch.sqrt(u * u + v * v))
        inside = dist < 1
        bulge = torch.sqrt((1 - dist.clamp(max=1) ** 2)).where(~box, torch.full_like(dist, 0.5))
        shade = 0.75 + 0.35 * (u * light[:, :1, None] + v * light[:, 1:, None]).clamp(-1, 1) * 0.5 + 0.15 * bulge
        along = dx * torch.cos(pick(tex_o)) + dy * torch.sin(pick(tex_o))
        tex = 1 + pick(tex_a) * torch.sin(2 * math.pi * pick(tex_f) * along + pick(tex_p))
        col = colour.gather(1, i.view(b, 1, 1).expand(b, 1, 3)).view(b, 3, 1, 1)
        haze = torch.exp(-zk / 60).unsqueeze(1)
        painted = (col * (shade * tex).unsqueeze(1)) * haze + sky.view(b, 3, 1, 1) * (1 - haze)
        img = torch.where(inside.unsqueeze(1), painted, img)
        z = torch.where(inside, zk * (1 - 0.08 * bulge), z)
    disp = 1 / z
    lo, hi = disp.amin(dim=(1, 2), keepdim=True), disp.amax(dim=(1, 2), keepdim=True)
    disp = (disp - lo) / (hi - lo).clamp_min(1e-6)
    rgbd = torch.cat([img.clamp(0, 1), disp.unsqueeze(1)], dim=1)
    return (rgbd * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------------------------
# Ground-truth encoding model


def _gabor_bank(size: int = 9) -> torch.Tensor:
    """Quadrature Gabor pairs at 2 scales x 4 orientations: (16, 1, size, size)."""
    r = torch.arange(size) - size // 2
    y, x = torch.meshgrid(r.float(), r.float(), indexing="ij")
    kernels = []
    for wavelength, sigma in ((3.0, 1.5), (7.0, 3.0)):
        env = torch.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
        for o in range(4):
            th = o * math.pi / 4
            t = x * math.cos(th) + y * math.sin(th)
            for fn in (torch.cos, torch.sin):
                k = env * fn(2 * math.pi * t / wavelength)
                kernels.append(k - k.mean())
    return torch.stack(kernels).unsqueeze(1)


def feature_maps(rgbd: np.ndarray, batch: int = 256) -> torch.Tensor:
    """uint8 RGBD (N, R, R, 4) -> (N, F, 28, 28) feature maps, F = len(FEATURES)."""
    bank = _gabor_bank()
    out = []
    for i in range(0, len(rgbd), batch):
        x = torch.from_numpy(rgbd[i:i + batch]).float().permute(0, 3, 1, 2) / 255
        x = F.interpolate(x, size=(56, 56), mode="area")
        r, g, bl, d = x.unbind(1)
        lum = (r + g + bl) / 3
        resp = F.conv2d(lum.unsqueeze(1), bank, padding=bank.shape[-1] // 2)           # (B, 16, 56, 56)
        energy = torch.sqrt(resp[:, 0::2] ** 2 + resp[:, 1::2] ** 2 + 1e-8)             # (B, 8, 56, 56)
        gy, gx = torch.gradient(d, dim=(1, 2))
        maps = torch.cat([lum.unsqueeze(1), (r - g).unsqueeze(1), (bl - (r + g) / 2).unsqueeze(1), energy,
                          d.unsqueeze(1), torch.sqrt(gx ** 2 + gy ** 2).unsqueeze(1) * 10], 1)
        out.append(F.avg_pool2d(maps, 2))
    return torch.cat(out)


@dataclass
class VoxelModel:
    roi_of_voxel: np.ndarray      # (V,) index into ROI_SPECS keys, -1 outside VC
    rf: torch.Tensor              # (V, 28*28) Gaussian pooling weights
    weights: torch.Tensor         # (V, F) feature weights
    reliability: np.ndarray       # (V,) true single-trial split-half reliability (0 = no signal)


def make_voxel_model(cfg: SimulationConfig, gen: torch.Generator) -> VoxelModel:
    names = list(ROI_SPECS)
    shares = np.array([ROI_SPECS[n][0] for n in names])
    counts = np.floor(shares / shares.sum() * cfg.n_voxels * (1 - OUTSIDE_VC)).astype(int)
    roi = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    roi = np.concatenate([roi, np.full(cfg.n_voxels - len(roi), -1)])
    perm = torch.randperm(cfg.n_voxels, generator=gen).numpy()
    roi = roi[perm]
    sigma = np.array([ROI_SPECS[names[k]][1] if k >= 0 else 0.1 for k in roi])
    centre = _u(gen, cfg.n_voxels, 2, lo=0.08, hi=0.92)
    # Higher areas are biased to the centre of the visual field, as the real retinotopy is foveal-heavy.
    centre = torch.where(torch.from_numpy(sigma > 0.12).unsqueeze(1), 0.5 + (centre - 0.5) * 0.6, centre)
    grid = (torch.arange(FEATURE_RES) + 0.5) / FEATURE_RES
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    s = torch.from_numpy(sigma).float().view(-1, 1)
    d2 = (gx.reshape(1, -1) - centre[:, :1]) ** 2 + (gy.reshape(1, -1) - centre[:, 1:]) ** 2
    rf = torch.exp(-d2 / (2 * s ** 2))
    rf = rf / rf.sum(1, keepdim=True)
    profile = torch.tensor([PROFILES[ROI_SPECS[names[k]][2]] if k >= 0 else PROFILES["mid"] for k in roi])
    sparse = (_u(gen, cfg.n_voxels, len(FEATURES)) < 0.5).float()
    sign = torch.where(_u(gen, cfg.n_voxels, len(FEATURES)) < 0.3, -1.0, 1.0)
    weights = profile * sparse * sign * _u(gen, cfg.n_voxels, len(FEATURES), lo=0.2, hi=1.0)
    # Reliability: a null fraction carries no signal; the rest draw from Beta(2, b), b chosen so that the median over
    # all voxels (nulls and outside-VC voxels included) is about the requested value.
    q = (0.5 - cfg.null_fraction) / (1 - cfg.null_fraction)
    beta_b = _beta_b_for_quantile(q, cfg.median_reliability)
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
    rel = rng.beta(2.0, beta_b, cfg.n_voxels)
    rel[rng.random(cfg.n_voxels) < cfg.null_fraction] = 0.0
    rel[roi < 0] = 0.0
    return VoxelModel(roi_of_voxel=roi, rf=rf, weights=weights, reliability=rel)


def _beta_b_for_quantile(q: float, value: float) -> float:
    """b such that the q-quantile of Beta(2, b) is `value` (bisection on a sampled CDF; deterministic)."""
    grid = np.linspace(1e-4, 1 - 1e-4, 20001)
    lo, hi = 0.1, 100.0
    for _ in range(60):
        b = (lo + hi) / 2
        pdf = grid * (1 - grid) ** (b - 1)
        cdf = np.cumsum(pdf) / pdf.sum()
        lo, hi = (b, hi) if np.interp(value, grid, cdf) < q else (lo, b)
    return (lo + hi) / 2


def clean_responses(model: VoxelModel, features: torch.Tensor, stats: tuple | None = None):
    """Noise-free voxel responses (N, V), z-scored with `stats` (mean, std) or with their own statistics."""
    n, f = features.shape[:2]
    pooled = features.reshape(n * f, -1) @ model.rf.T                                 # (N*F, 784) @ (784, V)
    resp = (pooled.view(n, f, -1) * model.weights.T.unsqueeze(0)).sum(1)             # (N, V)
    resp = torch.sign(resp) * resp.abs().pow(0.8)                                      # mild compressive nonlinearity
    mean, std = stats if stats is not None else (resp.mean(0), resp.std(0).clamp_min(1e-6))
    return ((resp - mean) / std).numpy(), (mean, std)


def noisy_trials(clean: np.ndarray, reliability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Single trials: signal scaled to variance r, independent noise + a weak global component to variance 1 - r."""
    signal = clean * np.sqrt(reliability)
    noise_sd = np.sqrt(1 - reliability)
    global_part = rng.standard_normal((len(clean), 1)) * 0.3
    indep = rng.standard_normal(clean.shape) * np.sqrt(1 - 0.09)
    return (signal + noise_sd * (global_part + indep)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Writing the subject


def simulate_subject(out: Path, cfg: SimulationConfig, progress=None) -> dict:
    """Write stimuli, rgbd, sbj_<N>.npz, the unpaired tree with depth folders and simulated.json into `out`."""
    out = Path(out)
    start = time.perf_counter()
    say = progress or (lambda msg: None)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    stim_gen = torch.Generator().manual_seed(cfg.seed)
    say("rendering paired stimuli")
    paired = render_scenes(cfg.n_train + cfg.n_test, cfg.resolution, stim_gen)
    train, test = paired[:cfg.n_train], paired[cfg.n_train:]
    release.write_stimuli(layout.stimuli_file(out, cfg.resolution), train[..., :3], test[..., :3])
    release.write_stimuli(layout.rgbd_file(out, cfg.resolution), train, test)

    say("simulating voxel responses")
    vox_gen = torch.Generator().manual_seed(cfg.seed * 1000 + cfg.subject)
    model = make_voxel_model(cfg, vox_gen)
    clean, _ = clean_responses(model, feature_maps(paired))
    rng = np.random.default_rng(cfg.seed * 1000 + cfg.subject)
    train_order = rng.permutation(cfg.n_train)
    train_fmri = noisy_trials(clean[train_order], model.reliability, rng)
    test_labels = np.tile(np.arange(cfg.n_test), cfg.n_repeats)
    test_labels = test_labels[rng.permutation(len(test_labels))]                     # presentation order
    test_trials = noisy_trials(clean[cfg.n_train + test_labels], model.reliability, rng)
    grouped = test_trials[np.argsort(test_labels, kind="stable")].reshape(cfg.n_test, cfg.n_repeats, -1)
    ceiling, snr = release.noise_ceiling_from_repeats(grouped)
    arrays = {"arr_0": train_fmri, "arr_1": test_trials, "arr_2": grouped.mean(1).astype(np.float32),
              "arr_3": train_order.astype(np.int64), "arr_4": test_labels.astype(np.int64),
              "arr_5": ceiling, "arr_6": np.maximum(snr, 1e-3).astype(np.float32)}
    names = list(ROI_SPECS)
    masks = {n: model.roi_of_voxel == k for k, n in enumerate(names)}
    masks["LVC"] = masks["V1"] | masks["V2"] | masks["V3"]
    masks["HVC"] = masks["LOC"] | masks["FFA"] | masks["PPA"]
    masks["VC"] = model.roi_of_voxel >= 0
    release.write_subject(layout.subject_file(out, cfg.subject), arrays, {n: masks[n] for n in ROIS})
    n_rep = cfg.n_repeats
    true_ceiling = np.sqrt(model.reliability / (model.reliability + (1 - model.reliability) / n_rep))
    def write_truth(path: Path):
        with open(path, "wb") as f:
            np.savez(f, reliability=model.reliability, true_noise_ceiling=true_ceiling, roi=model.roi_of_voxel)
    write_atomic(out / f"sbj_{cfg.subject}_truth.npz", write_truth)

    say(f"rendering {cfg.n_unpaired} unpaired images")
    unpaired_gen = torch.Generator().manual_seed(cfg.seed + 7919)
    _write_unpaired(out, render_scenes(cfg.n_unpaired, cfg.resolution, unpaired_gen), cfg.n_classes)

    vc = masks["VC"]
    split_half = _split_half_single_trial(grouped[:, :, vc])
    manifest = {
        "simulated": True,
        "note": "SIMULATED subject made by `brainrecon simulate`: procedural RGBD scenes and voxel responses from a "
                "known encoding model. Not real fMRI.",
        "parameters": asdict(cfg),
        "features": list(FEATURES),
        "rois": {n: int(m.sum()) for n, m in masks.items()},
        "median_noise_ceiling_vc": float(np.median(ceiling[vc])),
        "median_single_trial_split_half_r_vc": float(np.median(split_half)),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text_atomic(out / "simulated.json", json.dumps(manifest, indent=2))
    return manifest


def _split_half_single_trial(grouped: np.ndarray) -> np.ndarray:
    """Per voxel: correlation over images between two single trials (repeat 0 vs 1, 2 vs 3, ...), averaged."""
    rs = []
    for a in range(0, grouped.shape[1] - 1, 2):
        x, y = grouped[:, a], grouped[:, a + 1]
        x, y = x - x.mean(0), y - y.mean(0)
        rs.append((x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0) + 1e-12))
    return np.mean(rs, axis=0)


def _write_unpaired(out: Path, images: np.ndarray, n_classes: int) -> None:
    """ImageNet-style tree `imagenet/val/<class>/<file>.JPEG` + depth PNGs named by running index (natural order)."""
    image_root = layout.unpaired_image_dir(out)
    depth_dirs = [layout.unpaired_depth_dir(out, s) for s in ("small", "large")]
    for d in depth_dirs:
        d.mkdir(parents=True, exist_ok=True)
    n = len(images)
    per_class = math.ceil(n / n_classes)
    for c in range(math.ceil(n / per_class)):
        (image_root / f"n{c:08d}").mkdir(parents=True, exist_ok=True)

    def write_one(i: int):
        cls = image_root / f"n{i // per_class:08d}"
        rgb_path = cls / f"sim_{i:06d}.JPEG"
        if not rgb_path.exists():
            write_atomic(rgb_path, lambda p: Image.fromarray(images[i, ..., :3]).save(p, format="JPEG", quality=95))
        depth_path = depth_dirs[0] / f"{i:08d}.png"
        if not depth_path.exists():
            write_atomic(depth_path, lambda p: Image.fromarray(images[i, ..., 3]).save(p, format="PNG"))
        large = depth_dirs[1] / depth_path.name
        if not large.exists():  # true depth: the small and large folders hold the same maps (hard-linked)
            try:
                os.link(depth_path, large)
            except OSError:
                Image.fromarray(images[i, ..., 3]).save(large, format="PNG")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write_one, range(n)))
