"""Several subjects in one model (data.subjects / --subjects) and a new subject adapted from such a run
(train.init_from / --init-from), on a tiny simulated group."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.config import load_config
from brainrecon.errors import UserError
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.simulation.group import simulate_group
from brainrecon.simulation.simulate import SimulationConfig
from brainrecon.train import checkpoint
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder
from conftest import tiny_overrides

GROUP_SIM = SimulationConfig(seed=0, n_voxels=150, n_unpaired=32, resolution=32, n_train=160, n_test=10, n_repeats=4,
                             n_classes=4)
ENCODER = {"train.batch_size": 16, "train.milestones": "[]", "model.input_size": 32, "train.steps_per_epoch": 3}
DECODER = {"train.batch_size": 8, "train.milestones": "[]", "train.steps_per_epoch": 3, "train.warn_seconds": 0,
           "train.unpaired_image_batch": 4, "train.unpaired_fmri_batch": 4, "loss.perceptual_net": "none",
           "train.amp": "false"}


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    root = tmp_path_factory.mktemp("group")
    simulate_group(root, GROUP_SIM, [1, 2, 3])
    return root


def enc_cfg(epochs=2, **extra):
    return load_config("encoder", "rgbd", "demo", tiny_overrides(**{**ENCODER, "train.epochs": epochs, **extra}))


def dec_cfg(epochs=2, **extra):
    return load_config("decoder", "rgbd", "demo", tiny_overrides(**{**DECODER, "train.epochs": epochs, **extra}))


@pytest.fixture(scope="module")
def group_runs(group, tmp_path_factory):
    out = tmp_path_factory.mktemp("group_runs")
    train_encoder(enc_cfg(**{"data.subjects": "[1,2]"}), group, out / "enc", quiet=True)
    train_decoder(dec_cfg(**{"data.subjects": "[1,2]"}), group, out / "dec", encoder_run=out / "enc", quiet=True)
    return out


def test_a_group_shares_images_and_differs_in_voxels(group):
    manifest = json.loads((group / "simulated.json").read_text())
    counts = [manifest["group"][s]["n_voxels"] for s in ("1", "2", "3")]
    assert len(set(counts)) == 3 and all(135 <= c <= 165 for c in counts)     # drawn within +-10 %
    with np.load(group / "sbj_1.npz") as a, np.load(group / "sbj_2.npz") as b:
        assert a["arr_0"].shape[1] != b["arr_0"].shape[1]
        assert sorted(a["arr_3"]) == sorted(b["arr_3"])                         # the same training images


def test_a_group_run_shares_its_trunk_and_reconstructs_each_subject(group, group_runs, tmp_path):
    enc = checkpoint.load_group_encoder(group_runs / "enc")
    one, two = enc.members["1"], enc.members["2"]
    assert one.backbone is two.backbone and one.heads is two.heads            # shared image pathway
    assert one.space_maps["6"].weight.shape[0] != two.space_maps["6"].weight.shape[0]    # own readouts
    dec = checkpoint.load_group_decoder(group_runs / "dec")
    assert dec.members["1"].blocks is dec.members["2"].blocks
    for s in (1, 2):
        path = reconstruct(group_runs / "dec", "test", data_dir=group, subject=s)
        rec = load_reconstructions(path)
        assert int(rec["subject"]) == s and rec["reconstructions"].shape[0] == 10 and "ceiling_reconstructions" in rec
    result = CliRunner().invoke(app, ["reconstruct", str(group_runs / "dec"), "--data-dir", str(group)])
    assert result.exit_code == 2 and "holds subjects 1, 2; pass --subject N" in result.output
    with pytest.raises(UserError, match="not 3"):
        checkpoint.load_decoder(group_runs / "dec", subject=3)


def test_a_group_run_resumes_to_the_same_weights(group, tmp_path):
    cfg = dec_cfg(**{"data.subjects": "[1,2]", "train.self_supervision": "false"})
    train_decoder(cfg, group, tmp_path / "straight", quiet=True)
    train_decoder(dec_cfg(1, **{"data.subjects": "[1,2]", "train.self_supervision": "false"}), group,
                  tmp_path / "resumed", quiet=True)
    train_decoder(cfg, group, tmp_path / "resumed", resume=True, quiet=True)
    a = checkpoint.load(tmp_path / "straight/last.pt")["model"]
    b = checkpoint.load(tmp_path / "resumed/last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_a_new_subject_is_adapted_from_the_group_with_few_pairs(group, group_runs, tmp_path):
    m = train_encoder(enc_cfg(**{"data.subject": 3, "data.pairs": 20, "train.init_from": str(group_runs / "enc")}),
                      group, tmp_path / "enc3", quiet=True)
    n3 = m["n_voxels"]
    assert m["pairs"]["stimuli"] == 20 and m["init_from"]["subjects"] == [1, 2]
    enc3 = checkpoint.load_encoder(tmp_path / "enc3")
    group_enc = checkpoint.load_group_encoder(group_runs / "enc")
    assert enc3.space_maps["6"].weight.shape[0] == n3 and enc3.branch_mix.shape[0] == n3
    assert n3 not in (group_enc.members["1"].arch.n_voxels, group_enc.members["2"].arch.n_voxels)
    d = train_decoder(dec_cfg(**{"data.subject": 3, "data.pairs": 20, "train.init_from": str(group_runs / "dec")}),
                      group, tmp_path / "dec3", encoder_run=tmp_path / "enc3", quiet=True)
    assert d["init_from"]["subjects"] == [1, 2] and d["pairs"]["stimuli"] == 20
    dec3, cfg3 = checkpoint.load_decoder(tmp_path / "dec3")
    assert dec3.input_fc.in_features == n3 and cfg3.train.init_from
    recs = load_reconstructions(reconstruct(tmp_path / "dec3", "test", data_dir=group))
    assert recs["reconstructions"].shape[0] == 10


def test_the_adapted_encoder_starts_from_the_group(group, group_runs, tmp_path):
    """Before any step, the adapted encoder predicts the new subject's training fMRI better than a fresh one."""
    from brainrecon.data.datasets import load_paired
    from brainrecon.train.adapt import adapt_encoder
    from brainrecon.train.encoder import build_encoder, predict, voxel_correlation
    cfg = enc_cfg(**{"data.subject": 3})
    data = load_paired(group, cfg.data, "rgbd")
    torch.manual_seed(0)
    fresh = build_encoder(cfg, data.n_voxels, group)
    torch.manual_seed(0)
    adapted = build_encoder(cfg, data.n_voxels, group)
    adapt_encoder(adapted, group_runs / "enc", cfg, data)
    r_fresh = voxel_correlation(predict(fresh, data.train_images), data.train_fmri).median()
    r_adapted = voxel_correlation(predict(adapted, data.train_images), data.train_fmri).median()
    assert r_adapted > r_fresh + 0.05


def test_a_different_stimulus_set_is_refused_in_one_line(group, group_runs, tmp_path):
    other = tmp_path / "other"
    simulate_group(other, SimulationConfig(**{**GROUP_SIM.__dict__, "n_train": 120}), [3])
    result = CliRunner().invoke(app, ["train-encoder", "--data-dir", str(other), "--subject", "3", "--config", "demo",
                                      "--init-from", str(group_runs / "enc"), "--out", str(tmp_path / "run"),
                                      *sum((["--set", s] for s in tiny_overrides(**ENCODER, **{"train.epochs": 1})),
                                           [])])
    assert result.exit_code == 2, result.output
    assert "not the stimulus set" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
    # a group whose subject files do not pair with the one stimulus file
    broken = tmp_path / "broken"
    shutil.copytree(group, broken)
    shutil.copy(other / "sbj_3.npz", broken / "sbj_2.npz")
    with pytest.raises(UserError, match="sbj_2.npz"):
        train_encoder(enc_cfg(**{"data.subjects": "[1,2]"}), broken, tmp_path / "broken_run", quiet=True)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_process_group_training_equals_one_process(group, tmp_path):
    """torchrun with gloo, 2 ranks of batch 8 each, against one process of batch 16: every step sees the same 16
    pairs per subject and averages the same gradients (pairs only: no random unpaired batches differ by rank)."""
    # no validation split: best.pt is the last epoch in both, not an argmin that rounding may tip
    sets = {**DECODER, "train.epochs": 2, "train.self_supervision": "false", "data.subjects": "[1,2]",
            "data.val_fraction": 0}
    train_decoder(load_config("decoder", "rgbd", "demo", tiny_overrides(**{**sets, "train.batch_size": 16})), group,
                  tmp_path / "one", quiet=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "brainrecon", "train-decoder", "--data-dir", str(group), "--config", "demo", "--subjects", "1,2",
           "--no-self-supervision", "--out", str(tmp_path / "two"),
           *sum((["--set", s] for s in tiny_overrides(**{
               k: v for k, v in sets.items() if k not in ("data.subjects", "train.self_supervision")})), [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    a = checkpoint.load(tmp_path / "one/last.pt")["model"]
    b = checkpoint.load(tmp_path / "two/last.pt")["model"]
    assert a.keys() == b.keys()
    # The bias of each block's conv feeds a GroupNorm of one channel per group, which removes it: its gradient is zero
    # in exact arithmetic, rounding noise in practice, and Adam's first steps move it by about lr along that noise's
    # sign. It cannot change an output (checked below); every other weight must agree.
    for k in a:
        if not (".blocks." in k and k.endswith(".2.bias")):
            assert float((a[k] - b[k]).norm()) <= 1e-3 * float(a[k].norm()), k     # measured: at most 2.3e-5
    one, two = (checkpoint.load_group_decoder(tmp_path / run) for run in ("one", "two"))
    with np.load(group / "sbj_1.npz") as z, torch.no_grad():
        fmri = torch.as_tensor(z["arr_2"][:, z["VC"].astype(bool)])
        torch.testing.assert_close(one.members["1"](fmri), two.members["1"](fmri), rtol=1e-3, atol=1e-4)
