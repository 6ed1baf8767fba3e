import json
import warnings

import numpy as np
import pytest
import torch

from brainrecon.config import load_config
from brainrecon.evaluation.distances import pixcorr_distance
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.train.decoder import train_decoder
from brainrecon.train.ridge import cross_validate, fit_ridge
from tests.conftest import tiny_overrides


def ridge_cfg():
    return load_config("decoder", "rgbd", "demo", tiny_overrides(**{"model.kind": "ridge"}))


def test_ridge_run_is_interior_deterministic_and_beats_mean_image(tiny_subject, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m1 = train_decoder(ridge_cfg(), tiny_subject, tmp_path / "a", quiet=True)
    assert not m1["lambda_at_grid_edge"] or any("end of the grid" in str(w.message) for w in caught)
    m2 = train_decoder(ridge_cfg(), tiny_subject, tmp_path / "b", quiet=True)
    assert m1["lambda"] == m2["lambda"] and m1["cv_pixcorr"] == m2["cv_pixcorr"]
    assert (tmp_path / "a/ridge_cv.png").exists()
    reconstruct(tmp_path / "a", data_dir=tiny_subject)
    rec = load_reconstructions(tmp_path / "a")
    reconstruct(tmp_path / "b", data_dir=tiny_subject)
    np.testing.assert_array_equal(rec["reconstructions"], load_reconstructions(tmp_path / "b")["reconstructions"])
    truth = rec["ground_truth"]
    mean_image = np.repeat(truth.mean(0, keepdims=True).round().astype(np.uint8), len(truth), axis=0)
    ridge_r = 1 - np.diag(pixcorr_distance(rec["reconstructions"], truth))
    control_r = 1 - np.diag(pixcorr_distance(mean_image, truth))
    # the mean image is a strong control on these scenes (sky over ground): ridge must beat it on most images
    assert ridge_r.mean() > control_r.mean() and (ridge_r > control_r).mean() >= 0.6, (ridge_r, control_r)
    records, _ = evaluate_runs([rec], EvalOptions(ways=(2,), metrics=("pixcorr",), repeats=50))
    assert {r["channel"] for r in records} == {"rgb", "depth"}
    metrics = json.loads((tmp_path / "a/metrics.json").read_text())
    assert metrics["model"] == "ridge" and len(metrics["cv_pixcorr"]) == len(metrics["cv_lambdas"])


def test_ridge_recovers_a_linear_map(rng):
    """More samples than voxels (the primal form): CV picks a small lambda and the fit reproduces the map."""
    n, v = 300, 40
    x = torch.tensor(rng.standard_normal((n, v)))
    w = torch.tensor(rng.standard_normal((v, 30)))
    y = x @ w + 0.01 * torch.tensor(rng.standard_normal((n, 30)))
    scores = cross_validate((x - x.mean(0)) / x.std(0), y, [1e-3, 1e-1, 1e1, 1e3, 1e5], 4, 0)
    assert int(np.argmax(scores)) < 3 and scores.max() > 0.99
    state = fit_ridge(x, y, 1e-3)
    z = (x - state["voxel_mean"].double()) / state["voxel_std"].double()
    pred = z @ state["left"].double() @ state["right"].double() + state["intercept"].double()
    torch.testing.assert_close(pred, y, atol=0.05, rtol=0)


@pytest.mark.parametrize("n,v", [(60, 200), (300, 40)], ids=["dual", "primal"])
def test_both_forms_give_the_closed_form_ridge_map(rng, n, v):
    """The factors that fit_ridge keeps predict, on new voxels, exactly what the textbook ridge map
    W = (Z'Z + lam I)^-1 Z'(Y - mean Y) predicts: with fewer samples than voxels through the dual form (factors of
    rank n, from the n x n Gram matrix), otherwise through the primal form (rank V)."""
    x = torch.tensor(rng.standard_normal((n, v)))
    y = x @ torch.tensor(rng.standard_normal((v, 30))) + 0.1 * torch.tensor(rng.standard_normal((n, 30)))
    lam = 10.0
    state = fit_ridge(x, y, lam)
    assert tuple(state["left"].shape) == (v, min(n, v))          # n factors: the dual path; V: the primal one
    z = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    w = torch.linalg.solve(z.T @ z + lam * torch.eye(v, dtype=z.dtype), z.T @ (y - y.mean(0)))
    new = (torch.tensor(rng.standard_normal((20, v))) - x.mean(0)) / x.std(0)
    pred = new @ state["left"].double() @ state["right"].double() + state["intercept"].double()
    torch.testing.assert_close(pred, new @ w + y.mean(0), rtol=1e-4, atol=1e-3)


def test_a_folder_that_holds_a_fit_is_refused_or_kept_never_overwritten(tiny_subject, tmp_path):
    """As a deep run's folder: without --resume one line; with --resume the fit is kept (nothing refitted) when the
    config matches, and another config is refused; a deep run is refused there; a fit cut before its metrics.json
    is fitted again."""
    from brainrecon.errors import UserError
    run = tmp_path / "r"
    first = train_decoder(ridge_cfg(), tiny_subject, run, quiet=True)
    stamp = (run / "best.pt").stat().st_mtime_ns
    with pytest.raises(UserError, match="already holds a fitted model; pass --resume"):
        train_decoder(ridge_cfg(), tiny_subject, run, quiet=True)
    assert train_decoder(ridge_cfg(), tiny_subject, run, quiet=True, resume=True) == {**first, "kept": True}
    assert (run / "best.pt").stat().st_mtime_ns == stamp
    other = load_config("decoder", "rgbd", "demo", tiny_overrides(**{"model.kind": "ridge", "train.seed": 7}))
    with pytest.raises(UserError, match="different config than the fit was made with"):
        train_decoder(other, tiny_subject, run, quiet=True, resume=True)
    deep = load_config("decoder", "rgbd", "demo", tiny_overrides(**{"train.self_supervision": False}))
    for resume in (False, True):
        with pytest.raises(UserError, match="holds a ridge fit; choose a new --out"):
            train_decoder(deep, tiny_subject, run, quiet=True, resume=resume)
    (run / "metrics.json").unlink()
    again = train_decoder(ridge_cfg(), tiny_subject, run, quiet=True, resume=True)
    assert again["lambda"] == first["lambda"] and (run / "metrics.json").exists()
