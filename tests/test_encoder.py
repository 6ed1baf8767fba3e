import json

import numpy as np
import pytest
import torch

from brainrecon import losses
from brainrecon.config import load_config
from brainrecon.errors import UserError
from brainrecon.models.encoder import Encoder, EncoderArch
from brainrecon.models.vgg import build_vgg, load_release_vgg
from brainrecon.train.encoder import encoder_loss, load_encoder, train_encoder, voxel_correlation
from tests.conftest import tiny_overrides


@pytest.mark.parametrize("modality,chans", [("rgb", 3), ("depth", 1), ("rgbd", 4)])
def test_output_shape_per_modality(modality, chans):
    enc = Encoder(EncoderArch(n_voxels=37, modality=modality, width=0.125, input_size=64, head_channels=8))
    assert enc(torch.rand(2, chans, 64, 64)).shape == (2, 37)


def test_paper_sizes_at_112():
    enc = Encoder(EncoderArch(n_voxels=5, modality="rgbd", width=0.125))
    assert enc.sides == {"conv1": 26, "conv2": 26, "conv3": 12, "conv4": 12}
    assert set(enc.space_maps) == {"26", "12"}


@pytest.mark.parametrize("arch,chans,prefix", [("vgg19", 4, "module."), ("vgg19", 1, "features.module."),
                                               ("vgg16", 1, "module.")])
def test_release_vgg_checkpoint_loads_strictly(tmp_path, arch, chans, prefix):
    ref = build_vgg(arch, chans)
    state = {}
    for k, v in ref.state_dict().items():
        key = "module." + k if prefix == "module." else k.replace("features.", "features.module.", 1)
        state[key] = v
    path = tmp_path / "vgg.pth.tar"
    torch.save({"epoch": 3, "arch": arch, "state_dict": state, "best_acc1": torch.tensor(0.5)}, path)
    loaded = load_release_vgg(path, arch, chans)
    torch.testing.assert_close(loaded.features[0].weight, ref.features[0].weight)
    assert loaded.features[0].in_channels == chans


def test_release_checkpoint_with_wrong_channels_is_a_user_error(tmp_path):
    path = tmp_path / "vgg.pth.tar"
    torch.save({"state_dict": {"module." + k: v for k, v in build_vgg("vgg19", 4).state_dict().items()}}, path)
    with pytest.raises(UserError, match="shape mismatch"):
        load_release_vgg(path, "vgg19", 1)
    with pytest.raises(UserError, match="fetch-data --only vgg"):
        load_release_vgg(tmp_path / "absent.pth.tar", "vgg19", 1)


def test_regulariser_gradients_are_finite():
    cfg = load_config("encoder", "rgbd", "demo", ["model.input_size=32"])
    enc = Encoder(EncoderArch(n_voxels=20, modality="rgbd", width=0.125, input_size=32, head_channels=8))
    loss, parts = encoder_loss(enc, enc(torch.rand(4, 4, 32, 32)), torch.randn(4, 20), cfg)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.trainable_parameters() if p.grad is not None)
    assert set(parts) >= {"group_lasso", "second_moment", "l1_convs", "l1_chan_mix", "l1_branch_mix"}


def test_second_moment_prefers_compact_maps():
    compact = torch.zeros(1, 9, 9)
    compact[0, 4, 4] = 1
    spread = torch.zeros(1, 9, 9)
    spread[0, 0, 0] = spread[0, 8, 8] = 1 / 2 ** 0.5
    assert losses.second_moment(compact) < 1e-6 < losses.second_moment(spread)


def test_voxel_correlation_matches_numpy(rng):
    a, b = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    expected = [np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(5)]
    np.testing.assert_allclose(voxel_correlation(torch.tensor(a), torch.tensor(b)).numpy(), expected, atol=1e-6)


def test_short_training_learns_and_beats_shuffled_control(tiny_subject, tmp_path):
    sets = tiny_overrides(**{"train.epochs": 6, "train.batch_size": 16, "train.milestones": "[]",
                             "model.input_size": 32, "train.lr": 3e-3})
    cfg = load_config("encoder", "rgbd", "demo", sets)
    metrics = train_encoder(cfg, tiny_subject, tmp_path / "enc", quiet=True)
    history = [json.loads(s) for s in (tmp_path / "enc/metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_criterion"] < history[0]["train_criterion"]
    enc = load_encoder(tmp_path / "enc")
    from brainrecon.data.datasets import as_float, load_paired
    data = load_paired(tiny_subject, cfg.data, "rgbd")
    with torch.no_grad():
        pred = enc(as_float(data.test_images))
    r = float(np.median(voxel_correlation(pred, data.test_fmri).numpy()))
    shuffled = voxel_correlation(pred, data.test_fmri[torch.randperm(len(pred), generator=torch.Generator()
                                                                     .manual_seed(0))]).median()
    assert metrics["median_r"] == pytest.approx(r, abs=1e-5)
    assert r > 0.1 and r > float(shuffled) + 0.1, (r, float(shuffled))
    assert (tmp_path / "enc/voxel_r.png").stat().st_size > 1000
