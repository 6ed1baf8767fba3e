"""The few-pairs study's fresh test set (benchmarks/few_pairs_fresh.py): the same subject, its training data
untouched, N new scenes each shown n_repeats times, averaged; a subject it cannot rebuild is refused in one line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from benchmarks.few_pairs_fresh import fresh_data, reconstruct_kept
from benchmarks.few_pairs_report import FRESH_PANELS, study_scores
from brainrecon.config import load_config
from brainrecon.data.datasets import load_paired
from brainrecon.reconstruct import load_reconstructions
from brainrecon.simulation.group import simulate_group
from brainrecon.train.decoder import train_decoder
from tests.conftest import TINY, tiny_overrides

CFG = replace(TINY, n_voxels=120, n_train=60, n_test=10, n_repeats=4, n_unpaired=4)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    simulate_group(root / "data", CFG, [1, 2])
    return root / "data", fresh_data(root / "data", CFG, 2, 16)


def test_fresh_test_set_keeps_the_training_data_and_adds_new_scenes(made):
    data, fresh = made
    with np.load(data / "sbj_2.npz") as old, np.load(fresh / "sbj_2.npz") as new:
        for k in old.files:
            if k in ("arr_0", "arr_3") or not k.startswith("arr_"):
                assert np.array_equal(old[k], new[k]), k
        labels, trials, avg = new["arr_4"], new["arr_1"], new["arr_2"]
        assert avg.shape == (16, old["arr_0"].shape[1])
        assert np.array_equal(np.bincount(labels), np.full(16, CFG.n_repeats))
        means = np.stack([trials[labels == i].mean(0) for i in range(16)])
        assert np.allclose(means, avg, atol=1e-5)
    with np.load(data / "images_32.npz") as old, np.load(fresh / "images_32.npz") as new:
        assert np.array_equal(old["train_images"], new["train_images"])
        assert new["test_images"].shape[0] == 16
        gaps = ((new["test_images"][:, None] - old["test_images"][None]) ** 2).mean((2, 3, 4))
        assert gaps.min() > 1e-3                        # no fresh scene is one of the release's test scenes
    assert fresh_data(data, CFG, 2, 16) == fresh        # reused when done


def test_the_fresh_responses_carry_the_subjects_signal(made):
    """The averaged responses correlate with one another across voxels as the release's test averages do: per voxel
    over images, split-half (repeats 0-1 against 2-3) correlation is positive in the median over VC voxels."""
    _, fresh = made
    with np.load(fresh / "sbj_2.npz") as z:
        labels, trials, vc = z["arr_4"], z["arr_1"], z["VC"]
    order = np.argsort(labels, kind="stable")
    grouped = trials[order].reshape(16, CFG.n_repeats, -1)[:, :, vc]
    a, b = grouped[:, :2].mean(1), grouped[:, 2:].mean(1)
    a, b = a - a.mean(0), b - b.mean(0)
    r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    assert np.median(r) > 0.2


def test_the_fresh_folder_loads_as_the_release(made):
    _, fresh = made
    cfg = load_config("decoder", "rgbd", "demo", ["data.resolution=32", "data.subject=2", "data.val_fraction=0"])
    loaded = load_paired(fresh, cfg.data, "rgbd")
    assert tuple(loaded.test_fmri.shape)[0] == 16 and len(loaded.train_images) == CFG.n_train


def test_a_subject_it_cannot_rebuild_is_refused_in_one_line(made, tmp_path):
    data, _ = made
    with pytest.raises(SystemExit, match="sbj_2.npz: the voxel model rebuilt"):
        fresh_data(data, replace(CFG, median_reliability=0.05), 2, 16, out=tmp_path / "other")


def test_kept_decoders_are_reconstructed_and_scored_on_the_fresh_set(made):
    """The study's path: a decoder run in a study cell (<point>_seed<k>/<arm>/) reconstructed on the fresh set into
    reconstruct_fresh16/, then scored by the report on the fresh set's four panels, one score per fresh image; the
    transductive arm is passed over."""
    data, fresh = made
    regime = data.parent / "hard"
    regime.mkdir()
    (regime / "data").symlink_to(data)
    (regime / "data_fresh16").symlink_to(fresh)
    run = regime / "study" / "1of2_seed0" / "pairs_only"
    train_decoder(load_config("decoder", "rgbd", "demo", tiny_overrides(**{
        "data.subject": 2, "data.val_fraction": 0, "train.epochs": 1, "train.milestones": "[]",
        "train.self_supervision": "false"})), data, run, quiet=True)
    (regime / "study" / "1of2_seed0" / "both_cycles__transductive").mkdir()
    (regime / "study" / "1of2_seed0" / "both_cycles__transductive" / "config.yaml").write_text("{}")
    files = reconstruct_kept(regime / "study", fresh, 16)
    assert files == [run / "reconstruct_fresh16" / "reconstructions.npz"]
    assert len(load_reconstructions(files[0])["reconstructions"]) == 16
    scores, _ = study_scores(data.parent, {"pairs_only": "pairs only"}, {"pairs only": None}, lambda *a: "",
                             test="fresh16")
    assert {k[3:] for k in scores} == set(FRESH_PANELS)
    assert all(len(v[0]) == 16 and 0 <= v[0].min() and v[0].max() <= 1 for v in scores.values())
