import json

import numpy as np

from brainrecon.data import release
from brainrecon.data.release import noise_ceiling_from_repeats
from brainrecon.simulation.simulate import SimulationConfig, render_scenes, simulate_subject


def test_manifest_says_simulated(tiny_subject):
    m = json.loads((tiny_subject / "simulated.json").read_text())
    assert m["simulated"] is True and "SIMULATED" in m["note"]
    assert m["rois"]["VC"] == m["rois"]["LVC"] + m["rois"]["V4"] + m["rois"]["HVC"]


def test_files_load_through_the_data_layer(tiny_subject):
    stim = release.load_stimuli(tiny_subject, "rgbd", 32)
    assert stim.train.shape == (400, 32, 32, 4) and stim.test.shape == (12, 32, 32, 4)
    sub = release.load_subject(tiny_subject, 3, "VC")
    assert sub.test_trials.shape[:2] == (12, 6)
    release.check_pairing(sub, stim, tiny_subject / "x.npz")


def test_deterministic_per_seed_and_different_across_seeds(tmp_path):
    small = dict(n_voxels=60, n_unpaired=4, resolution=16, n_train=20, n_test=10, n_repeats=3, n_classes=2)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        simulate_subject(tmp_path / name, SimulationConfig(seed=seed, **small))
    load = lambda d: np.load(tmp_path / d / "sbj_3.npz")  # noqa: E731
    a, b, c = load("a"), load("b"), load("c")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["arr_0"], c["arr_0"])
    sa, sc = np.load(tmp_path / "a/images_16.npz"), np.load(tmp_path / "c/images_16.npz")
    assert not np.allclose(sa["train_images"], sc["train_images"])


def test_noise_ceiling_matches_ground_truth(tmp_path):
    cfg = SimulationConfig(n_voxels=400, n_unpaired=2, resolution=32, n_train=20, n_test=50, n_repeats=35)
    simulate_subject(tmp_path, cfg)
    written = np.load(tmp_path / "sbj_3.npz")["arr_5"]
    truth = np.load(tmp_path / "sbj_3_truth.npz")
    signal = truth["reliability"] > 0
    # the estimate from 35 repeats of 50 images follows the true ceiling of the generating model
    assert np.median(np.abs(written[signal] - truth["true_noise_ceiling"][signal])) < 0.05
    assert np.median(written[~signal]) < np.median(written[signal]) - 0.3
    manifest = json.loads((tmp_path / "simulated.json").read_text())
    assert 0.12 < manifest["median_single_trial_split_half_r_vc"] < 0.28   # asked for about 0.2


def test_noise_ceiling_estimator_on_known_variances(rng):
    signal = rng.standard_normal((200, 1, 300))
    trials = signal + rng.standard_normal((200, 20, 300)) * 2.0     # signal var 1, noise var 4, R = 20
    ceiling, snr = noise_ceiling_from_repeats(trials)
    assert abs(np.median(snr) - 0.25) < 0.05
    assert abs(np.median(ceiling) - np.sqrt(1 / (1 + 4 / 20))) < 0.03


def test_scenes_have_depth_and_variety():
    import torch
    rgbd = render_scenes(16, 32, torch.Generator().manual_seed(0))
    assert rgbd.dtype == np.uint8 and rgbd.shape == (16, 32, 32, 4)
    assert rgbd[..., 3].reshape(16, -1).std(1).min() > 10      # every depth map has structure
    assert rgbd[..., :3].reshape(16, -1).mean(1).std() > 3     # images differ from one another
