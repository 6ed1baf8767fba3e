"""`evaluate --depth-from-rgb`: MiDaS on reconstructed RGB as a run of its own (the paper's arm on an rgb-only run, the
rgbd arm on an rgbd run's own RGB), scored against the same named ground truth as the direct depth and compared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainrecon.data import layout
from brainrecon.errors import UserError
from brainrecon.evaluation.compare import compare_runs
from brainrecon.evaluation.depth_from_rgb import depth_from_rgb
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.models.midas import MidasNet


def fake_rgbd_run(rng, n=12, side=32):
    truth = rng.integers(0, 256, (n, side, side, 4), dtype=np.uint8)
    recon = np.clip(truth.astype(int) + rng.integers(-40, 40, truth.shape), 0, 255).astype(np.uint8)
    return {"run": np.array("decoder_rgbd"), "modality": np.array("rgbd"), "subject": np.array(3),
            "reconstructions": recon, "ground_truth": truth}


def midas_weights(root):
    torch.manual_seed(0)
    torch.save(MidasNet("small").state_dict(), layout.midas_file(root, "small"))  # published key names, random


def test_rgbd_arm_row_and_paired_comparison(tmp_path, rng):
    midas_weights(tmp_path)
    rec = fake_rgbd_run(rng)
    said = []
    runs = depth_from_rgb([rec], "small", tmp_path, torch.device("cpu"), say=said.append, arm="rgbd")
    name = "decoder_rgbd MiDaS-small(its RGB) | GT release depth (MiDaS large, 224 px)"
    assert [str(r["run"]) for r in runs] == ["decoder_rgbd", name]
    midas = runs[1]
    assert str(midas["modality"]) == "depth" and midas["reconstructions"].shape == (12, 32, 32, 1)
    assert midas["reconstructions"].dtype == np.uint8
    assert np.array_equal(midas["ground_truth"], rec["ground_truth"][..., 3:])
    per_image = midas["reconstructions"].reshape(12, -1)
    assert (per_image.min(1) == 0).all() and (per_image.max(1) == 255).all()      # normalised per image
    records, _ = evaluate_runs(runs, EvalOptions(ways=(2,), metrics=("pixcorr",), repeats=10, mode="percent"),
                               tmp_path)
    assert {(r["run"], r["channel"]) for r in records} == {("decoder_rgbd", "rgb"), ("decoder_rgbd", "depth"),
                                                           (name, "depth")}
    pairs = compare_runs(records)
    assert [(p["run_a"], p["run_b"], p["channel"]) for p in pairs] == [("decoder_rgbd", name, "depth")]
    assert any("rgbd arm" in s for s in said)


def rgb_only_and_depth_runs(rng, n=12, side=32):
    rgbd = fake_rgbd_run(rng, n, side)
    noise = rng.integers(-30, 30, (n, side, side, 3))
    rgb = {"run": np.array("decoder_rgb"), "modality": np.array("rgb"), "subject": np.array(3),
           "reconstructions": np.clip(rgbd["ground_truth"][..., :3].astype(int) + noise, 0, 255).astype(np.uint8),
           "ground_truth": rgbd["ground_truth"][..., :3].copy()}
    depth_only = {"run": np.array("decoder_depth"), "modality": np.array("depth"), "subject": np.array(3),
                  "reconstructions": rgbd["reconstructions"][..., 3:].copy(),
                  "ground_truth": rgbd["ground_truth"][..., 3:].copy()}
    return rgb, rgbd, depth_only


METRICS = ("pixcorr", "ssim")


def test_paper_arm_pairs_an_rgb_only_run_with_the_direct_depth(tmp_path, rng):
    midas_weights(tmp_path)
    rgb, rgbd, _ = rgb_only_and_depth_runs(rng)
    runs = depth_from_rgb([rgb, rgbd], "small", tmp_path, torch.device("cpu"), say=lambda s: None)
    derived = runs[-1]
    gt = "GT release depth (MiDaS large, 224 px)"
    assert str(derived["run"]) == f"decoder_rgb MiDaS-small(RGB) | {gt}" and len(runs) == 3
    assert np.array_equal(derived["ground_truth"], rgbd["ground_truth"][..., 3:])          # the same ground truth
    records, depth = evaluate_runs(runs, EvalOptions(ways=(2,), metrics=METRICS, repeats=10, mode="percent"), tmp_path)
    pairs = [p for p in compare_runs(records) if p["channel"] == "depth"]
    assert sorted((p["run_a"], p["run_b"], p["metric"]) for p in pairs) == [
        ("decoder_rgbd", str(derived["run"]), m) for m in sorted(METRICS)]                # one paired row per metric
    assert all(gt in p["run_b"] for p in pairs)
    assert {r["run"] for r in depth} == {"decoder_rgbd", str(derived["run"])}


def test_paper_arm_with_midas_ground_truth(tmp_path, rng):
    midas_weights(tmp_path)
    rgb, rgbd, depth_only = rgb_only_and_depth_runs(rng)
    said = []
    runs = depth_from_rgb([rgb, depth_only], "small", tmp_path, torch.device("cpu"), say=said.append,
                          gt="midas-on-rgb")
    gt = "GT MiDaS-small on the GT RGB"
    names = [str(r["run"]) for r in runs]
    assert names == ["decoder_rgb", f"decoder_rgb MiDaS-small(RGB) | {gt}", f"decoder_depth direct depth | {gt}"]
    midas, direct = runs[1], runs[2]
    assert np.array_equal(midas["ground_truth"], direct["ground_truth"])
    assert not np.array_equal(midas["ground_truth"], depth_only["ground_truth"])
    assert np.array_equal(direct["reconstructions"], depth_only["reconstructions"])
    records, _ = evaluate_runs(runs, EvalOptions(ways=(2,), metrics=METRICS, repeats=10, mode="percent"), tmp_path)
    pairs = [p for p in compare_runs(records) if p["channel"] == "depth"]
    assert sorted((p["run_a"], p["run_b"], p["metric"]) for p in pairs) == [
        (names[1], names[2], m) for m in sorted(METRICS)]
    assert any("ground truth = MiDaS small on the ground-truth RGB" in s for s in said)
    runs = depth_from_rgb([rgb, rgbd], "small", tmp_path, torch.device("cpu"), say=said.append, gt="midas-on-rgb")
    assert [(str(r["run"]), str(r["modality"])) for r in runs] == [
        ("decoder_rgb", "rgb"), ("decoder_rgbd", "rgb"), (f"decoder_rgb MiDaS-small(RGB) | {gt}", "depth"),
        (f"decoder_rgbd direct depth | {gt}", "depth")]                     # the rgbd run keeps its RGB rows
    assert runs[1]["reconstructions"].shape[-1] == 3
    records, _ = evaluate_runs(runs, EvalOptions(ways=(2,), metrics=METRICS, repeats=10, mode="percent"), tmp_path)
    assert len([p for p in compare_runs(records) if p["channel"] == "depth"]) == len(METRICS)


def test_paper_arm_refuses_what_does_not_fit(tmp_path, rng):
    midas_weights(tmp_path)
    rgb, rgbd, _ = rgb_only_and_depth_runs(rng)
    with pytest.raises(UserError, match="needs an rgb-only run .* and an rgbd or depth-only run"):
        depth_from_rgb([rgb], "small", tmp_path, torch.device("cpu"))
    other = {**rgbd, "ground_truth": rgbd["ground_truth"][::-1].copy()}                  # other test images / order
    with pytest.raises(UserError, match="no rgbd or depth-only run was given on the test images of decoder_rgb"):
        depth_from_rgb([rgb, other], "small", tmp_path, torch.device("cpu"))
    with pytest.raises(UserError, match="--depth-gt 'x'"):
        depth_from_rgb([rgb, rgbd], "small", tmp_path, torch.device("cpu"), gt="x")


def test_missing_midas_weights_name_fetch_data(tmp_path, rng):
    with pytest.raises(UserError, match="fetch-data --only midas"):
        depth_from_rgb([fake_rgbd_run(rng)], "small", tmp_path, torch.device("cpu"), arm="rgbd")
    rgb_only = {**fake_rgbd_run(rng), "modality": np.array("rgb")}
    with pytest.raises(UserError, match="--modality rgbd"):
        depth_from_rgb([rgb_only], "small", tmp_path, torch.device("cpu"), arm="rgbd")
