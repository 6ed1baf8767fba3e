"""train-encoder --model ridge: the read-out is the closed-form ridge solution with each voxel's cross-validated
penalty; the run loads as an encoder, drives the decoder's cycles and is refused where it cannot apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brainrecon.config import load_config
from brainrecon.errors import ConfigError, UserError
from brainrecon.train import checkpoint
from brainrecon.train.ridge_encoder import fit, per_voxel_cv
from tests.conftest import tiny_overrides


def _problem(n: int, f: int, v: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g, dtype=torch.float64)
    beta = torch.randn(f, v, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.3, 0.1, 0.0, 0.0][:v])
    return x, x @ beta + torch.randn(n, v, generator=g, dtype=torch.float64) + 5.0


@pytest.mark.filterwarnings("ignore:ridge read-out")      # the strongest voxels take the grid's smallest penalty
@pytest.mark.parametrize("n, f", [(30, 50), (80, 12)])     # dual (n <= F) and primal form
def test_readout_is_the_closed_form_solution_with_each_voxels_penalty(n, f):
    x, y = _problem(n, f)
    lambdas = [0.1, 1.0, 10.0, 100.0, 1000.0]
    state, record = fit(x, y, lambdas, folds=5, seed=0)
    best = per_voxel_cv((x - x.mean(0)) / x.std(0), y, lambdas, 5, 0).argmax(0)
    assert len(set(best.tolist())) > 1                         # voxels of other signal take other penalties
    z = (x - x.mean(0)) / x.std(0)
    yc = y - y.mean(0)
    for v in range(y.shape[1]):
        lam = lambdas[int(best[v])]
        w = torch.linalg.solve(z.T @ z + lam * torch.eye(f, dtype=z.dtype), z.T @ yc[:, v])
        assert torch.allclose(state["weight"][:, v].double(), w, rtol=1e-4, atol=1e-5), v
    assert torch.allclose(state["intercept"].double(), y.mean(0))
    assert sum(record["voxels_per_lambda"]) == y.shape[1]


@pytest.mark.filterwarnings("ignore:ridge read-out")
def test_a_constant_feature_gets_no_weight():
    """A feature constant over the training images is dropped: changing it on a new image changes no prediction."""
    x, y = _problem(30, 10)
    x[:, 3] = 2.5
    state, record = fit(x, y, [1.0, 10.0], folds=3, seed=0)
    assert record["constant_features_dropped"] == 1 and torch.all(state["weight"][3] == 0)
    assert torch.isfinite(state["weight"]).all()


def test_cv_scores_are_the_pooled_heldout_r2():
    """per_voxel_cv equals the R^2 of the explicit out-of-fold predictions; a voxel of pure noise takes a large
    penalty (the squared error, unlike a correlation, punishes a wild read-out)."""
    x, y = _problem(40, 15)
    z = (x - x.mean(0)) / x.std(0)
    lam, folds = 10.0, 4
    order = torch.randperm(40, generator=torch.Generator().manual_seed(7))
    pred = torch.empty_like(y)
    for k in range(folds):
        val = order[k::folds]
        keep = torch.ones(40, dtype=torch.bool)
        keep[val] = False
        zk, yk = z[keep] - z[keep].mean(0), y[keep] - y[keep].mean(0)
        w = torch.linalg.solve(zk.T @ zk + lam * torch.eye(15, dtype=z.dtype), zk.T @ yk)
        pred[val] = (z[val] - z[keep].mean(0)) @ w + y[keep].mean(0)
    expected = 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    assert torch.allclose(per_voxel_cv(z, y, [lam], folds, 7)[0], expected, atol=1e-8)
    lambdas = [0.1, 1.0, 10.0, 100.0, 1000.0, 1e4]
    noise = torch.randn(40, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    chosen = per_voxel_cv(z, noise, lambdas, folds, 7).argmax(0)
    assert float((chosen >= 3).float().mean()) > 0.8                    # nearly every noise voxel: 100 or more


@pytest.fixture(scope="module")
def ridge_encoder(tiny_subject, tmp_path_factory):
    from brainrecon.train.encoder import train_encoder
    out = tmp_path_factory.mktemp("ridge_enc")
    cfg = load_config("encoder", "rgbd", "demo", tiny_overrides(**{"model.input_size": 32, "model.kind": "ridge",
                                                                        "model.depth_input": "grey"}))
    return out, train_encoder(cfg, tiny_subject, out, quiet=True)


def test_ridge_encoder_run_loads_and_predicts_as_fitted(tiny_subject, ridge_encoder):
    from brainrecon.data.datasets import load_paired
    from brainrecon.train.encoder_step import predict, voxel_correlation
    run, metrics = ridge_encoder
    model = checkpoint.load_encoder(run)
    assert type(model).__name__ == "RidgeEncoder" and model.weight.abs().sum() > 0
    cfg = model.config
    data = load_paired(tiny_subject, cfg.data, cfg.modality, seed=cfg.train.seed)
    r = voxel_correlation(predict(model, data.test_images), data.test_fmri)
    assert abs(float(np.median(r.numpy())) - metrics["median_r"]) < 1e-5
    listing = json.loads((run / "pairs.json").read_text())
    assert listing["validation_stimuli"] and not set(listing["validation_stimuli"]) & set(
        data.train_stimuli.tolist())                              # the validation split held out of the fit


def test_ridge_encoder_drives_the_decoders_cycles(tiny_subject, ridge_encoder):
    """Both cycles and the held-out switches run through it; the DE cycle's gradient reaches the decoder."""
    from brainrecon.runtime import setup
    from brainrecon.train.decoder_step import DecoderStep
    from tests.test_decoder import decoder_cfg
    run, _ = ridge_encoder
    cfg = decoder_cfg(1, **{"data.val_fraction": 0, "loss.weights": "[0,0,1]", "loss.de_voxel_weights": "encoder_r"})
    step = DecoderStep(cfg, setup("cpu", False, 0), tiny_subject, run)
    step.fill_caches()
    loss, terms = step.loss(torch.arange(16), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(terms["loss_DE"])
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in step.raw.parameters())
    assert step.heldout.n_rows >= 3


def test_ridge_encoder_refused_where_it_cannot_apply():
    grey = ["model.kind=ridge", "model.depth_input=grey"]
    for sets, key in ((["data.subjects=[1,2]"], "data.subjects"), (["train.init_from=runs/g"], "train.init_from"),
                      (["model.train_backbone=true"], "model.train_backbone")):
        with pytest.raises(ConfigError, match=f"drop {key}$"):
            load_config("encoder", "rgbd", "demo", [*grey, *sets])
    with pytest.raises(ConfigError, match="set model.depth_input=grey"):
        load_config("encoder", "rgbd", "demo", ["model.kind=ridge", "model.depth_input=branch"])
    with pytest.raises(ConfigError, match="choose deep or ridge"):
        load_config("encoder", "rgbd", "demo", ["model.kind=linear"])


def test_ridge_encoder_exports_and_predicts_the_same_voxels(tiny_subject, ridge_encoder, tmp_path):
    """`brainrecon export` of a ridge read-out run: the card and config say what it is, and the exported folder
    predicts exactly what the run folder does."""
    import brainrecon
    from brainrecon.data.release import load_stimuli
    from brainrecon.train.export import export_run
    from brainrecon.train.exported import read_config
    out = export_run(ridge_encoder[0], tmp_path / "out")
    meta = read_config(out)
    assert meta["model_kind"] == "ridge" and meta["architecture"]["pool"] == 2
    assert meta["architecture"]["n_features"] > 0 and "--model ridge" in meta["training"]["command"]
    card = (out / "README.md").read_text()
    assert "a ridge read-out encoder" in card and "| fit | closed form (ridge), no epochs |" in card
    images = load_stimuli(tiny_subject, "rgbd", 32).test
    a = brainrecon.load_encoder(ridge_encoder[0], "cpu").predict(images)
    b = brainrecon.load_encoder(out, "cpu").predict(images)
    assert np.array_equal(a, b) and np.abs(a).sum() > 0


def test_a_second_fit_into_its_folder_is_refused_without_resume_and_kept_with_it(tiny_subject, ridge_encoder):
    run, metrics = ridge_encoder
    cfg = load_config("encoder", "rgbd", "demo", tiny_overrides(**{"model.input_size": 32, "model.kind": "ridge",
                                                                    "model.depth_input": "grey"}))
    from brainrecon.train.encoder import train_encoder
    with pytest.raises(UserError, match="already holds a fitted model; pass --resume"):
        train_encoder(cfg, tiny_subject, run, quiet=True)
    assert train_encoder(cfg, tiny_subject, run, quiet=True, resume=True) == {**metrics, "kept": True}


def test_train_encoder_model_ridge_from_the_command_line(tiny_subject, tmp_path):
    """`train-encoder --model ridge` fits and says so; without depth as grey on rgbd, one line names the fix."""
    from typer.testing import CliRunner

    from brainrecon.cli import app
    base = ["train-encoder", "--config", "demo", "--data-dir", str(tiny_subject), "--set", "data.resolution=32",
            "--set", "model.input_size=32", "--model", "ridge"]
    bad = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "model.depth_input=grey" in bad.output
    assert not (tmp_path / "bad").exists()
    ok = CliRunner().invoke(app, [*base, "--set", "model.depth_input=grey", "--out", str(tmp_path / "run")])
    assert ok.exit_code == 0, ok.output
    assert "ridge read-out, closed form" in " ".join(ok.output.split())
    assert checkpoint.load_best(tmp_path / "run", "encoder")["model_kind"] == "ridge"


def test_the_run_says_its_own_command_and_lists_as_an_encoder(ridge_encoder):
    """The command rebuilt from the run's config trains the same config (`--model ridge`); `runs` lists it as an
    encoder with its median r."""
    from brainrecon.config import to_dict
    from brainrecon.evaluation.run_listing import list_runs
    from brainrecon.train.run_command import training_command
    run, metrics = ridge_encoder
    cmd = training_command("encoder", to_dict(checkpoint.load_encoder(run).config), set(), False)
    assert cmd.exact and "--model ridge" in cmd.text
    row, = [r for r in list_runs(run.parent) if r.name == run.name]
    assert row.stage == "encoder" and row.result == f"median r {metrics['median_r']:.3f}"
