"""A group of simulated subjects who saw the same images, written as the release writes GOD: sbj_1.npz ... beside one
stimulus file and one unpaired tree.

Every subject shares the scenes (the seed's stimuli and unpaired images) and the encoding model's published per-area
parameters (simulation/soc.py: the SOC fits are group values; no per-subject spread of them is published, so none is
invented). What differs per subject is what differs between people's scans: the voxel population (how many voxels,
their ROI membership, receptive-field positions, and with them the sizes, which grow with eccentricity), each voxel's
reliability, and the noise. The voxel count is drawn per subject within +-10 % of --n-voxels (the GOD subjects'
visual-cortex counts differ by about that much), seeded by the group seed and the subject number.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from brainrecon.atomic import write_text_atomic
from brainrecon.errors import ConfigError
from brainrecon.simulation.simulate import SimulationConfig, simulate_subject

VOXEL_SPREAD = 0.10


def subject_voxels(cfg: SimulationConfig, subject: int) -> int:
    """The voxel count of one subject of a group: within +-VOXEL_SPREAD of cfg.n_voxels, seeded per subject."""
    draw = np.random.default_rng([cfg.seed, subject, 31337]).uniform(-VOXEL_SPREAD, VOXEL_SPREAD)
    return max(50, int(round(cfg.n_voxels * (1 + draw))))


def simulate_group(out: Path, cfg: SimulationConfig, subjects: list[int], progress=None) -> dict:
    """Write the subjects' sbj_<N>.npz beside one set of stimuli and unpaired images, and simulated.json with a
    summary per subject."""
    if len(set(subjects)) != len(subjects) or not subjects or min(subjects) < 1:
        raise ConfigError(f"--subjects {','.join(map(str, subjects))}: name each subject once, as numbers from 1")
    start = time.perf_counter()
    say = progress or (lambda msg: None)
    out = Path(out)
    per_subject = {}
    for k, subject in enumerate(subjects):
        sub = replace(cfg, subject=subject, n_voxels=subject_voxels(cfg, subject))
        say(f"subject {subject} ({k + 1} of {len(subjects)}): {sub.n_voxels} voxels")
        m = simulate_subject(out, sub, progress, shared=(k == 0))
        if k == 0:
            shared = {key: m[key] for key in ("simulated", "encoding_model")}
        per_subject[str(subject)] = {"n_voxels": sub.n_voxels, "rois": m["rois"],
                                     "median_noise_ceiling_vc": m["median_noise_ceiling_vc"],
                                     "median_single_trial_split_half_r_vc": m["median_single_trial_split_half_r_vc"]}
    manifest = {
        **shared,
        "note": "SIMULATED group made by `brainrecon simulate --subjects`: the same procedural RGBD scenes for every "
                "subject, each with its own voxel population of the same known encoding model. Not real fMRI.",
        "parameters": {**asdict(cfg), "subject": None, "subjects": list(subjects), "voxel_spread": VOXEL_SPREAD},
        "group": per_subject,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text_atomic(out / "simulated.json", json.dumps(manifest, indent=2))
    return manifest
