"""The few-pairs switches (loss.ed_noise and its source, loss.de_voxel_weights, model.ridge_anchor): off, the step is
the paper's bit for bit; on, each does what its help says. And simulate's single-trial SNR setting (--reliability)
gives the reliability it states."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from brainrecon.config import load_config
from brainrecon.errors import ConfigError
from brainrecon.runtime import setup
from brainrecon.simulation.simulate import SimulationConfig, simulate_subject
from brainrecon.train.decoder_step import DecoderStep, measured_noise_sd
from tests.conftest import TINY
from tests.test_decoder import decoder_cfg, tiny_encoder  # noqa: F401  (the fixture)


def _step(tiny_subject, encoder, **sets):
    return DecoderStep(decoder_cfg(1, **{"data.val_fraction": 0, **sets}), setup("cpu", False, 0), tiny_subject,
                       encoder)


def _loss_and_grads(step):
    step.fill_caches()
    torch.manual_seed(0)
    loss, _ = step.loss(torch.arange(16), torch.Generator().manual_seed(3))
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in step.raw.named_parameters()}


def test_switches_off_are_the_papers_step(tiny_subject, tiny_encoder):  # noqa: F811
    """Both switches written as false give the same loss and gradients, bit for bit, as the config without them."""
    plain = _loss_and_grads(_step(tiny_subject, tiny_encoder))
    off = _loss_and_grads(_step(tiny_subject, tiny_encoder, **{"loss.ed_noise": "false", "loss.ed_noise_from": "snr",
                                                               "loss.de_voxel_weights": "snr",
                                                               "model.ridge_anchor": "false"}))
    assert plain[0] == off[0]
    assert all(torch.equal(plain[1][k], off[1][k]) for k in plain[1])


def test_measured_noise_sd_is_the_single_trial_noise():
    """Trials of known reliability r (signal var r, noise var 1 - r): SNR r / (1 - r) gives noise SD sqrt(1 - r)."""
    gen = torch.Generator().manual_seed(0)
    r = torch.tensor([0.02, 0.1, 0.5, 0.9])
    trials = torch.randn(20000, 4, generator=gen) * r.sqrt() + torch.randn(20000, 4, generator=gen) * (1 - r).sqrt()
    sd = measured_noise_sd(trials, r / (1 - r))
    assert torch.allclose(sd, (1 - r).sqrt(), atol=0.02)


def test_ed_noise_adds_the_measured_noise_to_pseudo_fmri(tiny_subject, tiny_encoder, monkeypatch):  # noqa: F811
    """With loss.ed_noise the ED cycle's decoder input is E(x) plus noise whose per-voxel SD is the measured one (and
    mean zero); the paired term's input is untouched."""
    step = _step(tiny_subject, tiny_encoder, **{"loss.ed_noise": "true", "train.unpaired_image_batch": 64})
    step.fill_caches()
    seen = []
    real = step.model.forward
    monkeypatch.setattr(step.model, "forward", lambda v: (seen.append(v.detach().clone()), real(v))[1])
    diffs = []
    for k in range(30):
        seen.clear()
        gen = torch.Generator().manual_seed(k)
        u = torch.randint(0, len(step.pool), (64,), generator=torch.Generator().manual_seed(k))
        step.loss(torch.arange(16), gen)
        assert torch.equal(seen[0], step.data.train_fmri[:16])
        diffs.append(seen[1] - step.pool_voxels.get(u)["voxels"])
    noise = torch.cat(diffs)
    assert noise.mean().abs() < 0.02
    ratio = noise.std(0) / step.ed_noise_sd
    assert ratio.median().sub(1).abs() < 0.03 and ratio.min() > 0.8 and ratio.max() < 1.2
    assert "ed_noise" in step.record(tiny_subject)


def test_ridge_anchor_starts_at_the_closed_form_ridge(tiny_subject, tiny_encoder):  # noqa: F811
    """At step 0 (a zero residual) the anchored decoder returns the image of ridge fitted on the same pairs, i.e.
    the run `--model ridge` writes; its anchor's buffers are that closed-form solution."""
    from brainrecon.train.ridge import train_ridge
    step = _step(tiny_subject, tiny_encoder, **{"model.ridge_anchor": "true"})
    cfg = decoder_cfg(1, **{"data.val_fraction": 0, "model.kind": "ridge"})
    import tempfile
    from pathlib import Path

    from brainrecon.train import checkpoint
    with tempfile.TemporaryDirectory() as d:
        train_ridge(cfg, setup("cpu", False, 0), tiny_subject, Path(d) / "r", quiet=True)
        ridge, _ = checkpoint.load_decoder(Path(d) / "r")
        for name, buf in ridge.named_buffers():
            assert torch.equal(buf, getattr(step.raw.anchor, name)), name
    fmri = step.data.test_fmri
    with torch.no_grad():
        anchored = step.raw.eval()(fmri)
        expected = ridge(fmri).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(anchored, expected, atol=1e-5)
    assert step.anchor["lambda"] in cfg.ridge_lambdas


def test_ridge_anchor_trains_and_reloads(tiny_subject, tiny_encoder, tmp_path):  # noqa: F811
    """An anchored run trains its residual off zero and reconstructs from best.pt with the anchor it was saved with."""
    from brainrecon.train import checkpoint
    from brainrecon.train.decoder import train_decoder
    cfg = decoder_cfg(1, **{"data.val_fraction": 0, "model.ridge_anchor": "true"})
    m = train_decoder(cfg, tiny_subject, tmp_path / "a", encoder_run=tiny_encoder, quiet=True)
    assert "ridge_anchor" in m
    model, _ = checkpoint.load_decoder(tmp_path / "a")
    assert model.arch.anchor_rank > 0 and model.top[1].weight.abs().sum() > 0


def test_ridge_anchor_refused_where_it_cannot_apply():
    with pytest.raises(ConfigError, match="ridge_anchor"):
        load_config("decoder", "rgbd", "demo", ["model.ridge_anchor=true", "data.subjects=[1,2]"])


@pytest.mark.parametrize("target", [0.05, 0.2])
def test_reliability_sets_the_single_trial_split_half_r(tmp_path, target):
    """--reliability is the median single-trial reliability over the file's voxels (the drawn truth), and what the
    trials show agrees: the measured median split-half correlation of single trials over VC voxels (two trials of the
    same test images) is the truth's VC median within 0.015."""
    cfg = replace(TINY, median_reliability=target, n_voxels=800, n_test=40, n_repeats=12, n_train=40, n_unpaired=4)
    m = simulate_subject(tmp_path, cfg)
    with np.load(tmp_path / "sbj_3_truth.npz") as t:
        truth, vc = t["reliability"], t["roi"] >= 0
    assert abs(np.median(truth) - target) < 0.01
    measured = m["median_single_trial_split_half_r_vc"]
    assert abs(measured - np.median(truth[vc])) < 0.015, (measured, np.median(truth[vc]))


def test_reliability_out_of_range_is_one_line():
    with pytest.raises(ConfigError, match="--reliability"):
        SimulationConfig(median_reliability=0.9)
    assert np.isfinite(SimulationConfig(median_reliability=0.05).median_reliability)


# --- the held-out switches (train/heldout.py): loss.ed_noise_from=residual, loss.de_voxel_weights=encoder_r --------

def _heldout_truth(tiny_subject, encoder_run, step):
    """The encoder's residuals on its own validation stimuli, computed here from the run folder and the data alone."""
    import json

    from brainrecon.data.transforms import as_float
    from brainrecon.train import checkpoint
    held = json.loads((encoder_run / "pairs.json").read_text())["validation_stimuli"]
    rows = np.flatnonzero(np.isin(step.data.train_stimuli, held))
    assert len(rows) == len(held) > 2                 # every held-out stimulus is one of the decoder's rows
    encoder = checkpoint.load_encoder(encoder_run).eval()
    with torch.no_grad():
        pred = encoder(as_float(step.data.train_images[rows])).float()
    return step.data.train_fmri[rows].float() - pred, pred


def test_residual_noise_has_the_heldout_residuals_sd(tiny_subject, tiny_encoder):  # noqa: F811
    step = _step(tiny_subject, tiny_encoder, **{"loss.ed_noise": "true", "loss.ed_noise_from": "residual"})
    residuals, _ = _heldout_truth(tiny_subject, tiny_encoder, step)
    assert torch.allclose(step.ed_noise_sd, residuals.std(0), rtol=0.02, atol=1e-4)
    measured = measured_noise_sd(step.data.train_fmri, step.data.snr)
    assert not torch.allclose(step.ed_noise_sd, measured, rtol=0.05)     # another source than the SNR's
    assert "held out" in step.record(tiny_subject)["ed_noise"]


def test_encoder_r_weights_zero_where_the_encoder_predicts_nothing(tiny_subject, tiny_encoder, monkeypatch):  # noqa: F811
    """The DE cycle's weight is the held-out r floored at 0 over its mean: zero exactly where r <= 0; and the DE term
    is computed with it."""
    from brainrecon import losses
    from brainrecon.correlation import pearson
    step = _step(tiny_subject, tiny_encoder, **{"loss.de_voxel_weights": "encoder_r"})
    residuals, pred = _heldout_truth(tiny_subject, tiny_encoder, step)
    r = pearson(pred, pred + residuals, dim=0)
    w = step.de_weight
    assert bool((r <= 0).any()) and bool((r > 0).any())
    assert torch.all(w[r <= 0] == 0)
    assert torch.allclose(w, r.clamp_min(0) / r.clamp_min(0).mean(), rtol=0.02, atol=1e-3)
    seen = []
    real = losses.fmri_loss
    monkeypatch.setattr(losses, "fmri_loss", lambda pred, target, weight, cos: (seen.append(weight),
                                                                                 real(pred, target, weight, cos))[1])
    step.fill_caches()
    step.loss(torch.arange(16), torch.Generator().manual_seed(0))
    assert len(seen) == 1 and seen[0] is w
    assert "de_voxel_weights" in step.record(tiny_subject)


def test_heldout_switches_refuse_an_encoder_without_heldout_rows(tmp_path):
    from brainrecon.errors import UserError
    from brainrecon.train.heldout import heldout_rows
    with pytest.raises(UserError, match="pairs.json: missing"):
        heldout_rows(tmp_path, np.arange(10))
    (tmp_path / "pairs.json").write_text('{"validation_stimuli": [3, 40]}')
    with pytest.raises(UserError, match="held out 1 of this decoder's stimuli"):
        heldout_rows(tmp_path, np.arange(10))
    (tmp_path / "pairs.json").write_text('{"validation_stimuli": [3, 4, 5, 40]}')
    assert list(heldout_rows(tmp_path, np.array([5, 9, 4, 3, 3]))) == [0, 2, 3, 4]


@pytest.mark.parametrize("sets, match", [(["loss.ed_noise_from=residual"], "add loss.ed_noise=true"),
                                         (["loss.ed_noise=true", "loss.ed_noise_from=test"], "choose snr or residual"),
                                         (["loss.de_voxel_weights=r"], "choose snr")])
def test_heldout_switches_checked_in_one_line(sets, match):
    with pytest.raises(ConfigError, match=match):
        load_config("decoder", "rgbd", "demo", sets)


def test_heldout_rows_include_the_decoders_own_validation_split(tiny_subject, tiny_encoder):  # noqa: F811
    """With the default validation split on both (same seed, same pairs) the decoder holds out the encoder's own
    validation stimuli: the switches measure on those validation rows, the same rows as without a decoder split."""
    import json
    held = json.loads((tiny_encoder / "pairs.json").read_text())["validation_stimuli"]
    split = _step(tiny_subject, tiny_encoder, **{"loss.ed_noise": "true", "loss.ed_noise_from": "residual",
                                                 "data.val_fraction": 0.05})
    assert sorted(split.data.val_stimuli.tolist()) == sorted(held) and split.heldout.n_rows == len(held)
    whole = _step(tiny_subject, tiny_encoder, **{"loss.ed_noise": "true", "loss.ed_noise_from": "residual"})
    assert torch.allclose(split.ed_noise_sd, whole.ed_noise_sd, atol=1e-5)
