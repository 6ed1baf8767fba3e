"""`evaluate --depth-from-rgb`: MiDaS on the reconstructed RGB as a run of its own, compared with the direct depth."""

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


def test_midas_row_and_paired_comparison(tmp_path, rng):
    torch.manual_seed(0)
    torch.save(MidasNet("small").state_dict(), layout.midas_file(tmp_path, "small"))  # published key names, random
    rec = fake_rgbd_run(rng)
    said = []
    runs = depth_from_rgb([rec], "small", tmp_path, torch.device("cpu"), say=said.append)
    assert [str(r["run"]) for r in runs] == ["decoder_rgbd", "decoder_rgbd MiDaS(RGB)"]
    midas = runs[1]
    assert str(midas["modality"]) == "depth" and midas["reconstructions"].shape == (12, 32, 32, 1)
    assert midas["reconstructions"].dtype == np.uint8 and np.array_equal(midas["ground_truth"], rec["ground_truth"][..., 3:])
    per_image = midas["reconstructions"].reshape(12, -1)
    assert (per_image.min(1) == 0).all() and (per_image.max(1) == 255).all()      # normalised per image
    records, _ = evaluate_runs(runs, EvalOptions(ways=(2,), metrics=("pixcorr",), repeats=10, mode="percent"),
                               tmp_path)
    assert {(r["run"], r["channel"]) for r in records} == {("decoder_rgbd", "rgb"), ("decoder_rgbd", "depth"),
                                                           ("decoder_rgbd MiDaS(RGB)", "depth")}
    pairs = compare_runs(records)
    assert [(p["run_a"], p["run_b"], p["channel"]) for p in pairs] == [("decoder_rgbd", "decoder_rgbd MiDaS(RGB)",
                                                                        "depth")]


def test_missing_midas_weights_name_fetch_data(tmp_path, rng):
    with pytest.raises(UserError, match="fetch-data --only midas"):
        depth_from_rgb([fake_rgbd_run(rng)], "small", tmp_path, torch.device("cpu"))
    rgb_only = {**fake_rgbd_run(rng), "modality": np.array("rgb")}
    with pytest.raises(UserError, match="--modality rgbd"):
        depth_from_rgb([rgb_only], "small", tmp_path, torch.device("cpu"))
