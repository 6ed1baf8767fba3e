"""Properties of the simulated physiology (simulation/soc.py), each measured from the model's responses to probes."""

import math

import numpy as np
import pytest
import torch

from brainrecon.simulation import soc
from brainrecon.simulation.simulate import SimulationConfig, assign_rois, build_model, render_scenes

ROI_NAMES = list(soc.ROI_PARAMS)
EARLY = [ROI_NAMES.index(n) for n in ("V1", "V2", "V3")]


def grating(res: int, cpd: float, orientation: float, contrast: float, phase: float) -> np.ndarray:
    """An achromatic full-field grating around mean grey as uint8 RGBD (res, res, 4), spanning the 12 deg stimulus."""
    deg = (np.arange(res) + 0.5) / res * soc.STIMULUS_DEG
    y, x = np.meshgrid(deg, deg, indexing="ij")
    lum = 0.5 * (1 + contrast * np.cos(2 * math.pi * cpd * (x * math.cos(orientation) + y * math.sin(orientation))
                                       + phase))
    return (np.stack([lum, lum, lum, np.zeros_like(lum)], -1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def subject():
    """A subject's model normalised over 300 scenes, built for a given luminance share (cached per share)."""
    stimuli = render_scenes(300, 64, torch.Generator().manual_seed(0))
    built = {}

    def get(share: float):
        if share not in built:
            built[share] = build_model(SimulationConfig(n_voxels=700, n_unpaired=1, resolution=64,
                                                        luminance_share=share), stimuli)
        return built[share]
    return get


def respond(model: soc.VoxelModel, images: np.ndarray) -> np.ndarray:
    return soc.responses(model, soc.components(model, soc.FieldMaps()(images))).numpy()


def test_early_responses_are_phase_invariant(subject):
    model, _ = subject(0.0)   # the contrast pathway alone: a luminance share is phase-dependent by definition
    pairs = [(grating(64, cpd, ori, 0.8, 0.0), grating(64, cpd, ori, 0.8, math.pi))
             for cpd in (0.5, 1.0, 2.0) for ori in (0.0, math.pi / 4, math.pi / 2)]
    blank = grating(64, 1.0, 0.0, 0.0, 0.0)
    r = respond(model, np.stack([*(g for pair in pairs for g in pair), blank]))
    response_range = r.max(0) - r.min(0)
    shift = np.abs(r[0:-1:2] - r[1:-1:2]) / response_range                           # (pairs, V)
    # early-ROI voxels whose pRF (2 sizes) lies on the stimulus: at its border the grating's edge against the grey
    # screen does move with the phase, as it would on a real screen
    inside = 6 - np.abs(model.centre_deg).max(1) > 2 * model.size_deg
    early = np.isin(model.roi_of_voxel, EARLY) & inside
    assert early.sum() > 100
    assert np.median(shift[:, early]) < 0.01
    assert np.percentile(shift[:, early], 95) < 0.05
    # and the gratings did drive them: the full-contrast response is far from the blank's
    assert np.median((r[:-1:2, early] - r[-1, early]).min(0) / response_range[early]) > 0.5


def test_contrast_response_is_compressive_in_the_configured_order(subject):
    model, _ = subject(0.05)
    maps = soc.FieldMaps()(np.stack([grating(64, 1.0, 0.0, 0.2, 0.0), grating(64, 1.0, 0.0, 0.4, 0.0)]))
    contrast = soc.components(model, maps)["contrast"].numpy()                       # the SOC output, before scaling
    ratio = contrast[1] / contrast[0]
    v1 = model.roi_of_voxel == ROI_NAMES.index("V1")
    assert np.median(ratio[v1]) < 1.5                                                # doubling contrast: far below x2
    # measured exponent per ROI: response ~ (contrast^2)^n, so log2(ratio) / 2 estimates n (slightly lower, since
    # divisive normalisation already compresses the contrast image)
    measured = {name: float(np.log2(np.median(ratio[model.roi_of_voxel == k])) / 2) for k, name in enumerate(ROI_NAMES)}
    for name in ROI_NAMES:
        assert 0.75 * soc.ROI_PARAMS[name]["n"] < measured[name] <= soc.ROI_PARAMS[name]["n"] * 1.01, measured
    order = ["V1", "V2", "V3", "V4", "LOC"]
    assert all(measured[a] > measured[b] for a, b in zip(order, order[1:])), measured


def test_prf_size_grows_with_eccentricity_at_the_configured_slope():
    cfg = SimulationConfig(n_voxels=400, n_unpaired=1, resolution=32)
    roi = assign_rois(cfg, torch.Generator().manual_seed(0))
    model = soc.make_voxel_model(roi, torch.Generator().manual_seed(1), np.full(len(roi), 0.2), 0.05)
    # point stimuli on the contrast image, one per field pixel (the CSS definition of pRF size)
    r = soc.second_order(model, torch.eye(soc.FIELD_PX ** 2)).numpy()                # (probes, V)
    deg = (np.arange(soc.FIELD_PX) + 0.5) / soc.PX_PER_DEG - soc.STIMULUS_DEG / 2
    y, x = (a.ravel() for a in np.meshgrid(deg, deg, indexing="ij"))
    sizes = []
    for v in range(r.shape[1]):                                                       # log-Gaussian fit per voxel
        keep = r[:, v] > 0.05 * r[:, v].max()
        design = np.stack([np.ones(keep.sum()), x[keep], y[keep], x[keep] ** 2 + y[keep] ** 2], 1)
        coef = np.linalg.lstsq(design, np.log(r[keep, v]), rcond=None)[0]
        sizes.append(math.sqrt(-1 / (2 * coef[3])))
    ecc = np.hypot(*model.centre_deg.T)
    for k, name in enumerate(ROI_NAMES[:4]):
        mask = model.roi_of_voxel == k
        slope, intercept = np.polyfit(ecc[mask], np.array(sizes)[mask], 1)
        assert abs(slope / soc.ROI_PARAMS[name]["k"] - 1) < 0.2, (name, slope)
        assert abs(intercept - soc.ROI_PARAMS[name]["size0"]) < 0.1, (name, intercept)


@pytest.mark.parametrize("share", [0.05, 0.3])
def test_measured_luminance_share_is_the_configured_one(subject, share):
    _, without = subject(0.0)
    model, with_lum = subject(share)
    # the same voxels with and without the luminance part: what the share adds is the variance the luminance-free
    # response cannot explain
    x, y = without - without.mean(0), with_lum - with_lum.mean(0)
    r = (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0))
    signal = model.reliability > 0
    assert abs(np.median(1 - r[signal] ** 2) - share) < 0.02
    # and what it adds is luminance: the residual follows the pRF-pooled luminance
    residual = y - r * np.sqrt((y * y).sum(0) / (x * x).sum(0)) * x
    stimuli = render_scenes(300, 64, torch.Generator().manual_seed(0))
    pooled = soc.components(model, soc.FieldMaps()(stimuli))["luminance"].numpy()
    p = pooled - pooled.mean(0)
    corr = (residual * p).sum(0) / np.sqrt((residual ** 2).sum(0) * (p ** 2).sum(0))
    assert np.median(corr[signal]) > 0.5
