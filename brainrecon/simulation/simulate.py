"""A simulated subject, written in exactly the release formats, so every command runs on it unchanged.

Stimuli: procedural RGBD scenes (dead-leaves model): a sky and a textured ground plane whose depth grows towards the
horizon, occluded by textured, shaded shapes of power-law sizes, each standing at its own depth, painted far to near.
The depth channel is true depth, stored as MiDaS stores its output: inverse depth, min-max scaled per image to uint8.

Voxels: a fixed, seeded ground-truth encoding model, the second-order contrast (SOC) model of Kay et al. 2013 with
published per-area parameters, plus colour-opponent contrast and depth for hV4 and up and a small luminance share
(simulation/soc.py holds the model and the source of every parameter). Noise-free responses have variance 1 over the
stimulus set. Single trials add Gaussian noise (plus a weak global component) so that each voxel has a drawn
single-trial reliability (median ~0.2 across voxels; a fraction carries no signal). Noise ceiling and SNR are then
estimated from the 35 test repeats, as for the real data.
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
from PIL import Image

from brainrecon.atomic import write_atomic, write_text_atomic
from brainrecon.config import ROIS
from brainrecon.correlation import pearson
from brainrecon.data import layout, release
from brainrecon.errors import ConfigError
from brainrecon.simulation import soc

OUTSIDE_VC = 0.05  # voxels in the file that belong to no visual ROI (noise only), as V_all > VC in the real files


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
    """Median single-trial reliability over the file's voxels (signal variance / trial variance; nulls and
    outside-VC voxels included): the single-trial SNR setting. 0.2 is the standard regime; the hard regime of
    docs/results.md (`--reliability 0.05`) puts a well-trained encoder's median test r near real data's."""
    null_fraction: float = 0.2
    luminance_share: float = 0.05   # fixed before any result (issue 13); see simulation/soc.py

    def __post_init__(self):
        if self.resolution < 16 or self.resolution % 8:
            raise ConfigError(f"--resolution {self.resolution} must be a multiple of 8, at least 16")
        if self.n_voxels < 50:
            raise ConfigError(f"--n-voxels {self.n_voxels} is too small; use at least 50")
        if self.n_unpaired < 1 or self.n_train < 10 or self.n_test < 10:
            raise ConfigError("need at least 1 unpaired, 10 train and 10 test images")
        if not 0 <= self.luminance_share < 1:
            raise ConfigError(f"--luminance-share {self.luminance_share} must be in [0, 1)")
        if not 0 < self.median_reliability < 1 - self.null_fraction:
            raise ConfigError(f"--reliability {self.median_reliability} must be above 0 and below "
                              f"{1 - self.null_fraction:g} (a fraction {self.null_fraction:g} of voxels carry none)")
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
# Voxels: ROI membership and reliability here; the noise-free responses come from the SOC model in simulation/soc.py


def assign_rois(cfg: SimulationConfig, gen: torch.Generator) -> np.ndarray:
    """(V,) index into soc.ROI_PARAMS per voxel, -1 for the voxels outside VC; shuffled."""
    shares = np.array([p["share"] for p in soc.ROI_PARAMS.values()])
    counts = np.floor(shares / shares.sum() * cfg.n_voxels * (1 - OUTSIDE_VC)).astype(int)
    roi = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    roi = np.concatenate([roi, np.full(cfg.n_voxels - len(roi), -1)])
    return roi[torch.randperm(cfg.n_voxels, generator=gen).numpy()]


def draw_reliability(cfg: SimulationConfig, roi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A null fraction carries no signal; the rest draw from Beta(2, b), b chosen so that the median over all voxels
    (nulls and outside-VC voxels included) is about the requested value."""
    q = (0.5 - cfg.null_fraction) / (1 - cfg.null_fraction)
    rel = rng.beta(2.0, _beta_b_for_quantile(q, cfg.median_reliability), cfg.n_voxels)
    rel[rng.random(cfg.n_voxels) < cfg.null_fraction] = 0.0
    rel[roi < 0] = 0.0
    return rel


def build_model(cfg: SimulationConfig, stimuli: np.ndarray) -> tuple[soc.VoxelModel, np.ndarray]:
    """The subject's voxel model, normalised over `stimuli` (uint8 RGBD), and its noise-free responses to them,
    (N, V) float32 with mean 0 and variance 1 per voxel."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + cfg.subject)
    roi = assign_rois(cfg, gen)
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
    model = soc.make_voxel_model(roi, gen, draw_reliability(cfg, roi, rng), cfg.luminance_share)
    parts = soc.components(model, soc.FieldMaps()(stimuli))
    soc.fit_normalisation(model, parts)
    return model, soc.responses(model, parts).numpy()


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


def noisy_trials(clean: np.ndarray, reliability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Single trials: signal scaled to variance r, independent noise + a weak global component to variance 1 - r."""
    signal = clean * np.sqrt(reliability)
    noise_sd = np.sqrt(1 - reliability)
    global_part = rng.standard_normal((len(clean), 1)) * 0.3
    indep = rng.standard_normal(clean.shape) * np.sqrt(1 - 0.09)
    return (signal + noise_sd * (global_part + indep)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Writing the subject


def simulate_subject(out: Path, cfg: SimulationConfig, progress=None, shared: bool = True) -> dict:
    """Write stimuli, rgbd, sbj_<N>.npz, the unpaired tree with depth folders and simulated.json into `out`; with
    `shared` False only sbj_<N>.npz and its truth file (a further subject of a group: simulation/group.py)."""
    out = Path(out)
    start = time.perf_counter()
    say = progress or (lambda msg: None)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    stim_gen = torch.Generator().manual_seed(cfg.seed)
    say("rendering paired stimuli")
    paired = render_scenes(cfg.n_train + cfg.n_test, cfg.resolution, stim_gen)
    train, test = paired[:cfg.n_train], paired[cfg.n_train:]
    if shared:
        release.write_stimuli(layout.stimuli_file(out, cfg.resolution), train[..., :3], test[..., :3])
        release.write_stimuli(layout.rgbd_file(out, cfg.resolution), train, test)

    say("simulating voxel responses")
    model, clean = build_model(cfg, paired)
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
    names = list(soc.ROI_PARAMS)
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

    if shared:
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
        "encoding_model": {"name": "second-order contrast (SOC) model, Kay et al. 2013 "
                                   "(see brainrecon/simulation/soc.py)",
                           "luminance_share": cfg.luminance_share, **soc.describe()},
        "rois": {n: int(m.sum()) for n, m in masks.items()},
        "median_noise_ceiling_vc": float(np.median(ceiling[vc])),
        "median_single_trial_split_half_r_vc": float(np.median(split_half)),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if shared:
        write_text_atomic(out / "simulated.json", json.dumps(manifest, indent=2))
    return manifest


def _split_half_single_trial(grouped: np.ndarray) -> np.ndarray:
    """Per voxel: correlation over images between two single trials (repeat 0 vs 1, 2 vs 3, ...), averaged."""
    rs = [pearson(grouped[:, a], grouped[:, a + 1], dim=0) for a in range(0, grouped.shape[1] - 1, 2)]
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
