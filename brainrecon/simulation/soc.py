"""The simulated subject's ground-truth encoding model: the second-order contrast (SOC) model of visual cortex.

The model follows Kay, Winawer, Rokem, Mezer & Wandell (2013), "A two-stage cascade model of BOLD responses in human
visual cortex", PLoS Comput Biol 9:e1003079 (the SOC model), with pRF sizes defined as in Kay, Winawer, Mezer & Wandell
(2013), "Compressive spatial summation in human visual cortex", J Neurophysiol 110:481 (CSS). Steps, in order:

1. Visual field. The stimulus spans STIMULUS_DEG = 12 x 12 degrees, as the GOD stimuli did (Horikawa & Kamitani 2017,
   Nat Commun 8:15037), on a mean-grey screen. It is resampled to a FIELD_PX = 96 px grid (8 px/deg) and set on a grey
   canvas, so the image's own border is an edge, as it was on the screen.
2. Local contrast (Cornelissen et al. 2006, J Neurosci 26:3634; Kay et al. 2013): luminance L (Rec. 601 luma of the
   sRGB values) minus its local mean, divided by the local mean; the local mean is a Gaussian of sigma 1 deg
   (LOCAL_MEAN_DEG, our choice: no paper fixes it for natural images).
3. Quadrature Gabor energy, phase-invariant: 8 orientations (as in the SOC model) at 3 spatial frequencies
   (0.5, 1, 2 cycles/deg, one octave apart, each with a one-octave bandwidth: envelope sigma = 0.56 wavelengths).
   Filters are scaled so that a grating of contrast A at a filter's own frequency and orientation gives energy A.
4. Divisive normalisation across orientation, E / (s + mean over orientations of E), with s = 0.5 and exponent r = 1
   (the first stage of the SOC model as published), then summed over orientation -> one contrast image per frequency;
   the three are averaged -> the contrast image C(x).
5. Gaussian pRF pooling and the second-order term, per voxel:  response = (sum_x G(x) (C(x) - c * m)^2) ** n,
   m = sum_x G(x) C(x), the sums running over the whole visual field (G has unit sum there; C is 0 off the stimulus).
   pRF size is the CSS/SOC definition, the SD of the response to point stimuli; for a Gaussian G of SD sigma raised to
   the power n that is sigma / sqrt(n), so G has sigma = size * sqrt(n). size = size0 + k * eccentricity.
6. Colour (hV4 and up): the same energy-normalisation-SOC cascade on colour-opponent contrast, (R - G) and
   (B - (R + G) / 2) divided by the local mean luminance, at the two lower frequencies (colour vision is low-pass) and
   4 orientations (colour energy is not known to be orientation-tuned in BOLD; 4 halves the cost).
7. Depth (hV4 and up): nearness (the stored inverse depth) and depth edges (its gradient magnitude), each pooled
   linearly by the voxel's G. No published voxel-wise depth model exists; these are the simulation's own assumption.
8. Mixing: every component is z-scored over the stimulus set; the voxel's non-luminance response is
   sum_j sqrt(w_j) * z_j with the ROI's weights w (contrast, colour, depth; depth split equally between nearness and
   edges), z-scored again. The luminance component (G-pooled luminance, the DC that survives in BOLD) is made
   orthogonal to it over the stimulus set and mixed in with variance share S (`--luminance-share`, default 0.05):
   response = sqrt(1 - S) * z_rest + sqrt(S) * z_lum_orth, so S is exactly the fraction of each voxel's explainable
   variance that luminance carries. No paper puts a number on S for BOLD; 0.05 was fixed before any result was seen.

Per-ROI parameters (ROI_PARAMS), each from its source:
- k: 0.10 (V1), 0.15 (V2), 0.27 (V3): SOC fits (Kay et al. 2013, PLoS CB); size0 = 0.5 deg for V1-hV4 (same source).
  hV4: k = 0.40. Rule: the published slopes grow by x1.5 (V1 -> V2) and x1.8 (V2 -> V3) per stage; one more x1.5 step
  gives 0.40 (pRF sizes keep growing from V3 to hV4: Dumoulin & Wandell 2008, NeuroImage 39:647; Kay et al. 2013 CSS).
  LOC/FFA/PPA: k = 0.80 (one more doubling), size0 = 1 deg, centres within 3 deg of fixation: ventral temporal pRFs are
  large and foveal (Kay, Weiner & Grill-Spector 2015, Curr Biol 25:595). These higher-ROI values are a rule, not fits.
- c (second-order weight): 0.93 (V1), 0.99 (V2), 0.99 (V3), 0.95 (hV4), from the SOC fits; LOC/FFA/PPA take hV4's 0.95.
- n (exponent): 0.18 (V1), 0.13 (V2), 0.12 (V3), 0.115 (hV4), from the SOC fits; LOC/FFA/PPA 0.10, stronger still, as
  compression grows along the hierarchy (Kay et al. 2013 CSS: strongest in anterior extrastriate maps).
- weights (contrast, colour, depth): V1-V3 (1, 0, 0); hV4 (0.6, 0.3, 0.1); LOC (0.5, 0.2, 0.3); FFA (0.6, 0.3, 0.1);
  PPA (0.4, 0.1, 0.5; the PPA responds to spatial layout, Epstein & Kanwisher 1998, Nature 392:598). Our assumption,
  fixed with the rest before any decoder was run on this model.
- voxel shares per ROI: the previous simulation's (about the relative sizes of the GOD ROIs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brainrecon.data.transforms import to_float

STIMULUS_DEG = 12.0
FIELD_PX = 96
PX_PER_DEG = FIELD_PX / STIMULUS_DEG
CANVAS_PX = 128                      # grey margin of 16 px; the FFT wraps field edges 32 px = 3.6 filter SDs apart
LOCAL_MEAN_DEG = 1.0
SF_CPD = (0.5, 1.0, 2.0)
COLOUR_SF_CPD = (0.5, 1.0)
N_ORIENTATIONS = 8
COLOUR_ORIENTATIONS = 4
NORM_S = 0.5
GREY = 0.5
# pRF centres: V1-hV4 uniform over the central 10 x 10 deg of the 12 deg stimulus, LOC/FFA/PPA over the central
# 6 x 6 deg (the higher maps over-represent the fovea).
CENTRE_SPAN_DEG = {"early": 10.0, "high": 6.0}

# ROI -> voxel share, size0 (deg), k (deg/deg), c, n, (w_contrast, w_colour, w_depth), centre span
ROI_PARAMS = {
    "V1": dict(share=0.24, size0=0.5, k=0.10, c=0.93, n=0.18, weights=(1.0, 0.0, 0.0), span="early"),
    "V2": dict(share=0.18, size0=0.5, k=0.15, c=0.99, n=0.13, weights=(1.0, 0.0, 0.0), span="early"),
    "V3": dict(share=0.14, size0=0.5, k=0.27, c=0.99, n=0.12, weights=(1.0, 0.0, 0.0), span="early"),
    "V4": dict(share=0.12, size0=0.5, k=0.40, c=0.95, n=0.115, weights=(0.6, 0.3, 0.1), span="early"),
    "LOC": dict(share=0.10, size0=1.0, k=0.80, c=0.95, n=0.10, weights=(0.5, 0.2, 0.3), span="high"),
    "FFA": dict(share=0.08, size0=1.0, k=0.80, c=0.95, n=0.10, weights=(0.6, 0.3, 0.1), span="high"),
    "PPA": dict(share=0.09, size0=1.0, k=0.80, c=0.95, n=0.10, weights=(0.4, 0.1, 0.5), span="high"),
}
OUTSIDE_ROI = "V4"      # parameters for the voxels outside VC (they carry no signal; any valid model will do)
COMPONENTS = ("contrast", "colour", "near", "depth_edge", "luminance")
SOURCES = {
    "SOC model, c, n, k (V1-V3), size0, s, r": "Kay, Winawer, Rokem, Mezer & Wandell 2013, PLoS Comput Biol "
                                                "9:e1003079",
    "pRF size = SD of the point-stimulus response": "Kay, Winawer, Mezer & Wandell 2013, J Neurophysiol 110:481",
    "contrast, not luminance, drives V1 BOLD": "Cornelissen et al. 2006, J Neurosci 26:3634",
    "12 x 12 deg stimuli": "Horikawa & Kamitani 2017, Nat Commun 8:15037",
    "hV4 k (rule)": "x1.5 per stage after V3; sizes grow V3 -> hV4 (Dumoulin & Wandell 2008, NeuroImage 39:647)",
    "LOC/FFA/PPA sizes (rule)": "large foveal pRFs (Kay, Weiner & Grill-Spector 2015, Curr Biol 25:595)",
    "PPA depth weight": "spatial layout (Epstein & Kanwisher 1998, Nature 392:598); the weight is an assumption",
    "luminance share 0.05": "no published value; fixed before any result",
}


def describe() -> dict:
    """Every constant of the model, for simulated.json."""
    return {"stimulus_deg": STIMULUS_DEG, "field_px": FIELD_PX, "local_mean_sigma_deg": LOCAL_MEAN_DEG,
            "sf_cpd": list(SF_CPD), "colour_sf_cpd": list(COLOUR_SF_CPD), "orientations": N_ORIENTATIONS,
            "colour_orientations": COLOUR_ORIENTATIONS,
            "normalisation_s": NORM_S, "normalisation_r": 1.0, "centre_span_deg": CENTRE_SPAN_DEG,
            "rois": {name: {**p, "weights": list(p["weights"])} for name, p in ROI_PARAMS.items()},
            "components": list(COMPONENTS), "sources": SOURCES}


# ---------------------------------------------------------------------------------------------------------------
# Stage 1: images -> maps over the visual field


def _field_coords() -> torch.Tensor:
    """Pixel centres of the field grid in degrees from fixation, x right / y down: (FIELD_PX,)."""
    return (torch.arange(FIELD_PX, dtype=torch.float64) + 0.5) / PX_PER_DEG - STIMULUS_DEG / 2


def _gabor_fft(sfs: tuple[float, ...], n_orient: int) -> torch.Tensor:
    """FFTs of complex (quadrature) Gabors on the canvas: (len(sfs) * n_orient, CANVAS, CANVAS) complex64."""
    r = torch.fft.fftfreq(CANVAS_PX, dtype=torch.float64) * CANVAS_PX           # 0, 1, ..., -1: wrapped offsets
    y, x = torch.meshgrid(r, r, indexing="ij")
    kernels = []
    for sf in sfs:
        wavelength = PX_PER_DEG / sf
        env = torch.exp(-(x ** 2 + y ** 2) / (2 * (0.56 * wavelength) ** 2))
        for o in range(n_orient):
            theta = math.pi * o / n_orient
            phase = 2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / wavelength
            even, odd = env * torch.cos(phase), env * torch.sin(phase)
            even = even - env * even.sum() / env.sum()                              # no response to uniform fields
            kernels.append(torch.complex(even, odd) * (2 / env.sum()))              # grating of contrast A -> |.| = A
    return torch.fft.fft2(torch.stack(kernels)).to(torch.complex64)


def _gaussian_fft(sigma_px: float) -> torch.Tensor:
    r = torch.fft.fftfreq(CANVAS_PX, dtype=torch.float64) * CANVAS_PX
    g = torch.exp(-(r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) / (2 * sigma_px ** 2))
    return torch.fft.fft2(g / g.sum()).to(torch.complex64)


def _normalised_energy(contrast_fft: torch.Tensor, bank_fft: torch.Tensor, n_sf: int) -> torch.Tensor:
    """(B, CH, CANVAS, CANVAS) complex FFTs of contrast channels -> (B, FIELD, FIELD) normalised energy image."""
    lo = (CANVAS_PX - FIELD_PX) // 2
    resp = torch.fft.ifft2(contrast_fft.unsqueeze(2) * bank_fft)                     # (B, CH, S*O, CANVAS, CANVAS)
    energy = resp[..., lo:lo + FIELD_PX, lo:lo + FIELD_PX].abs().sum(1)              # summed over channels
    energy = energy.view(len(energy), n_sf, -1, FIELD_PX, FIELD_PX)                  # (B, S, O, FIELD, FIELD)
    normalised = energy / (NORM_S + energy.mean(2, keepdim=True))                    # divisive normalisation
    return normalised.sum(2).mean(1)                                         # sum orientations, mean SFs


class FieldMaps:
    """Turns uint8 RGBD stimuli into the five maps the voxels pool: each (N, FIELD_PX * FIELD_PX) float32."""

    def __init__(self):
        self.bank = _gabor_fft(SF_CPD, N_ORIENTATIONS)
        self.colour_bank = _gabor_fft(COLOUR_SF_CPD, COLOUR_ORIENTATIONS)
        self.blur = _gaussian_fft(LOCAL_MEAN_DEG * PX_PER_DEG)

    def __call__(self, rgbd: np.ndarray, batch: int = 32) -> dict[str, torch.Tensor]:
        parts = [self._batch(rgbd[i:i + batch]) for i in range(0, len(rgbd), batch)]
        return {name: torch.cat([p[name] for p in parts]) for name in COMPONENTS}

    def _batch(self, rgbd: np.ndarray) -> dict[str, torch.Tensor]:
        x = to_float(rgbd)
        mode = dict(mode="area") if x.shape[-1] >= FIELD_PX else dict(mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=(FIELD_PX, FIELD_PX), **mode)                        # (B, 4, FIELD, FIELD)
        r, g, b, near = x.unbind(1)
        lum = 0.299 * r + 0.587 * g + 0.114 * b
        pad = (CANVAS_PX - FIELD_PX) // 2
        canvas = lambda t, fill: F.pad(t, (pad,) * 4, value=fill)                     # noqa: E731
        lum_c = canvas(lum, GREY)                                                        # the grey screen around it
        local_mean = torch.fft.ifft2(torch.fft.fft2(lum_c) * self.blur).real.clamp_min(0.05)
        contrast = (lum_c - local_mean) / local_mean
        opponent = torch.stack([canvas(r - g, 0.0), canvas(b - (r + g) / 2, 0.0)], 1) / local_mean.unsqueeze(1)
        gy, gx = torch.gradient(near, dim=(1, 2))
        flat = lambda t: t.reshape(len(t), -1)                                          # noqa: E731
        return {
            "contrast": flat(_normalised_energy(torch.fft.fft2(contrast).unsqueeze(1), self.bank, len(SF_CPD))),
            "colour": flat(_normalised_energy(torch.fft.fft2(opponent), self.colour_bank, len(COLOUR_SF_CPD))),
            "near": flat(near), "depth_edge": flat(torch.sqrt(gx ** 2 + gy ** 2) * PX_PER_DEG), "luminance": flat(lum),
        }


# ---------------------------------------------------------------------------------------------------------------
# Stage 2: voxels


@dataclass
class VoxelModel:
    roi_of_voxel: np.ndarray      # (V,) index into ROI_PARAMS keys, -1 outside VC
    centre_deg: np.ndarray        # (V, 2) pRF centre (x, y) in degrees from fixation
    size_deg: np.ndarray          # (V,) pRF size: SD of the response to point stimuli (CSS definition)
    pool: torch.Tensor            # (V, FIELD_PX**2) Gaussian G, sigma = size * sqrt(n), unit sum over the whole field
    c: torch.Tensor               # (V,) second-order weight
    n: torch.Tensor               # (V,) exponent
    weights: torch.Tensor         # (V, 3) contrast, colour, depth variance weights
    reliability: np.ndarray       # (V,) true single-trial split-half reliability (0 = no signal)
    luminance_share: float
    norm: dict | None = None      # component statistics over the stimulus set (fit_normalisation)


def roi_param(roi_index: int, key: str):
    names = list(ROI_PARAMS)
    return ROI_PARAMS[names[roi_index] if roi_index >= 0 else OUTSIDE_ROI][key]


def make_pools(centre_deg: np.ndarray, sigma_deg: np.ndarray) -> torch.Tensor:
    """Gaussian weights on the field grid, each normalised by its sum over the unbounded pixel lattice: (V, P)."""
    coords = _field_coords()
    wide = (torch.arange(-4 * FIELD_PX, 5 * FIELD_PX, dtype=torch.float64) + 0.5) / PX_PER_DEG - STIMULUS_DEG / 2
    centre = torch.from_numpy(centre_deg).double()
    s2 = 2 * torch.from_numpy(sigma_deg).double().view(-1, 1) ** 2
    gx = torch.exp(-(coords.view(1, -1) - centre[:, :1]) ** 2 / s2)                   # (V, FIELD)
    gy = torch.exp(-(coords.view(1, -1) - centre[:, 1:]) ** 2 / s2)
    zx = torch.exp(-(wide.view(1, -1) - centre[:, :1]) ** 2 / s2).sum(1, keepdim=True)
    zy = torch.exp(-(wide.view(1, -1) - centre[:, 1:]) ** 2 / s2).sum(1, keepdim=True)
    pool = ((gy / zy).unsqueeze(2) * (gx / zx).unsqueeze(1)).reshape(len(centre), -1).float()   # (V, FIELD*FIELD)
    # Gaussian tails below float32's smallest normal number are stored as 0: as subnormals they made every product
    # with the pools ~30x slower on x86 CPUs (measured: 9.3 s vs 0.28 s for one (1250, 9216) x (9216, 700) product)
    # while adding less than one ulp to any response (the simulated subject is bit-identical, checked)
    return torch.where(pool < torch.finfo(torch.float32).tiny, torch.zeros_like(pool), pool)


def make_voxel_model(roi: np.ndarray, gen: torch.Generator, reliability: np.ndarray,
                     luminance_share: float) -> VoxelModel:
    """pRF centres drawn uniformly over each ROI's span, sizes and the SOC parameters from ROI_PARAMS."""
    per_voxel = lambda key: np.array([roi_param(k, key) for k in roi])               # noqa: E731
    span = np.array([CENTRE_SPAN_DEG[s] for s in per_voxel("span")])
    centre = (torch.rand(len(roi), 2, generator=gen, dtype=torch.float64).numpy() - 0.5) * span[:, None]
    size = per_voxel("size0") + per_voxel("k") * np.hypot(centre[:, 0], centre[:, 1])     # grows with eccentricity
    n = per_voxel("n")
    return VoxelModel(roi_of_voxel=roi, centre_deg=centre, size_deg=size, pool=make_pools(centre, size * np.sqrt(n)),
                      c=torch.from_numpy(per_voxel("c")).float(), n=torch.from_numpy(n).float(),
                      weights=torch.from_numpy(per_voxel("weights")).float(),
                      reliability=reliability, luminance_share=luminance_share)


def second_order(model: VoxelModel, contrast: torch.Tensor) -> torch.Tensor:
    """The SOC stage on contrast images (N, P): (sum G (C - c m)^2) ** n per voxel -> (N, V), raw (no gain)."""
    m = contrast @ model.pool.T                                                        # (N, P) @ (P, V) -> (N, V)
    m2 = (contrast * contrast) @ model.pool.T
    variance = m2 - (2 * model.c - model.c ** 2) * m * m        # sum G (C - c m)^2 with sum G = 1, C = 0 off-field
    return variance.clamp_min(0).pow(model.n)


def components(model: VoxelModel, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw per-voxel components (N, V): SOC on contrast and colour, linear pooling of depth and luminance."""
    return {"contrast": second_order(model, maps["contrast"]), "colour": second_order(model, maps["colour"]),
            **{name: maps[name] @ model.pool.T for name in ("near", "depth_edge", "luminance")}}


def fit_normalisation(model: VoxelModel, parts: dict[str, torch.Tensor]) -> None:
    """Component statistics over the stimulus set, so that any later stimulus is scored on the same scale."""
    stats = {name: (t.mean(0), t.std(0).clamp_min(1e-8)) for name, t in parts.items()}
    z = {name: (parts[name] - m) / s for name, (m, s) in stats.items()}
    rest = _rest(model, z)
    rest_stats = (rest.mean(0), rest.std(0).clamp_min(1e-8))
    z_rest = (rest - rest_stats[0]) / rest_stats[1]
    beta = (z_rest * z["luminance"]).mean(0) * len(rest) / (len(rest) - 1)           # regression of lum on rest
    orth = z["luminance"] - beta * z_rest
    model.norm = {"components": stats, "rest": rest_stats, "beta": beta, "orth_std": orth.std(0).clamp_min(1e-8)}


def _rest(model: VoxelModel, z: dict[str, torch.Tensor]) -> torch.Tensor:
    w = model.weights.sqrt()
    depth = (z["near"] + z["depth_edge"]) / math.sqrt(2)
    return w[:, 0] * z["contrast"] + w[:, 1] * z["colour"] + w[:, 2] * depth


def responses(model: VoxelModel, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Noise-free responses (N, V) on the stimulus-set scale (mean 0, variance 1 over the stimulus set)."""
    norm = model.norm
    z = {name: (parts[name] - m) / s for name, (m, s) in norm["components"].items()}
    z_rest = (_rest(model, z) - norm["rest"][0]) / norm["rest"][1]
    z_lum = (z["luminance"] - norm["beta"] * z_rest) / norm["orth_std"]
    s = model.luminance_share
    return math.sqrt(1 - s) * z_rest + math.sqrt(s) * z_lum
