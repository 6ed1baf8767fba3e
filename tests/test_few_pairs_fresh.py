"""The few-pairs study's fresh test set (benchmarks/few_pairs_fresh.py): the same subject, its training data
untouched, N new scenes each shown n_repeats times, averaged; a subject it cannot rebuild is refused in one line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks.few_pairs import report
from benchmarks.few_pairs_fresh import fresh_data, reconstruct_kept
from benchmarks.few_pairs_report import FRESH_PANELS, study_scores
from brainrecon.config import load_config
from brainrecon.data.datasets import load_paired
from brainrecon.reconstruct import load_reconstructions
from brainrecon.simulation import soc
from brainrecon.simulation.group import simulate_group, subject_voxels
from brainrecon.simulation.simulate import build_model, render_scenes
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
        train_gaps = ((new["test_images"][:, None] - old["train_images"][None]) ** 2).mean((2, 3, 4))
        assert train_gaps.min() > 1e-3                  # nor one of its training scenes
    assert fresh_data(data, CFG, 2, 16) == fresh        # reused when done


def _r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column: Pearson r over rows."""
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def test_the_fresh_responses_are_the_subjects_responses_to_the_fresh_scenes(made):
    """The subject's noise-free responses to the written test scenes predict the written averages (per reliable
    voxel over images), and the same responses in another image order do not."""
    data, fresh = made
    sub = replace(CFG, subject=2, n_voxels=subject_voxels(CFG, 2))
    model, _ = build_model(sub, render_scenes(CFG.n_train + CFG.n_test, CFG.resolution,
                                              torch.Generator().manual_seed(CFG.seed)))
    with np.load(fresh / "rgbd_32_from_224_large_png_uint8.npz") as z:
        scenes = np.round(z["test_images"] * 255).astype(np.uint8) if z["test_images"].dtype != np.uint8 \
            else z["test_images"]
    clean = soc.responses(model, soc.components(model, soc.FieldMaps()(scenes))).numpy()
    with np.load(fresh / "sbj_2.npz") as z:
        avg = z["arr_2"]
    keep = model.reliability > np.median(model.reliability[model.reliability > 0])
    assert np.median(_r(clean, avg)[keep]) > 0.5
    assert np.median(_r(clean[np.roll(np.arange(16), 5)], avg)[keep]) < 0.3


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
    for folder, marker in (("both_cycles__transductive", "metrics.json"), ("both_cycles", "config.yaml")):
        (regime / "study" / "1of2_seed0" / folder).mkdir()                 # passed over; and a run not finished
        (regime / "study" / "1of2_seed0" / folder / marker).write_text("{}")
    files = reconstruct_kept(regime / "study", fresh, 16)
    assert files == [run / "reconstruct_fresh16" / "reconstructions.npz"]
    assert len(load_reconstructions(files[0])["reconstructions"]) == 16
    scores, _ = study_scores(data.parent, {"pairs_only": "pairs only"}, {"pairs only": None}, lambda *a: "",
                             test="fresh16")
    assert {k[3:] for k in scores} == set(FRESH_PANELS)
    assert all(len(v[0]) == 16 and 0 <= v[0].min() and v[0].max() <= 1 for v in scores.values())
    report(data.parent, n_fresh=16)
    table = (data.parent / "few_pairs_fresh16_tables.md").read_text()
    assert "| hard | 600 | pairs only |" in table                           # 1/2 of the 1,200 study pairs
    assert "perceptual" not in table and "depth ssim" in table
    assert (data.parent / "few_pairs_fresh16.png").exists() and (data.parent / "few_pairs_fresh16.csv").exists()
    assert not (data.parent / "few_pairs.csv").exists()                  # the 50-image report is left alone
