import json

import numpy as np
import pytest
import torch

from brainrecon import losses
from brainrecon.config import load_config
from brainrecon.data.transforms import N_CHANNELS
from brainrecon.errors import UserError
from brainrecon.models.encoder import Encoder, EncoderArch
from brainrecon.models.vgg import build_vgg, load_release_vgg
from brainrecon.train.checkpoint import load_encoder
from brainrecon.train.encoder import encoder_loss, train_encoder, voxel_correlation
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
    from brainrecon.data.datasets import load_paired
    from brainrecon.data.transforms import as_float
    data = load_paired(tiny_subject, cfg.data, "rgbd")
    with torch.no_grad():
        pred = enc(as_float(data.test_images))
    r = float(np.median(voxel_correlation(pred, data.test_fmri).numpy()))
    shuffled = voxel_correlation(pred, data.test_fmri[torch.randperm(len(pred), generator=torch.Generator()
                                                                     .manual_seed(0))]).median()
    assert metrics["median_r"] == pytest.approx(r, abs=1e-5)
    assert r > 0.1 and r > float(shuffled) + 0.1, (r, float(shuffled))
    assert (tmp_path / "enc/voxel_r.png").stat().st_size > 1000


@pytest.mark.parametrize("modality,taps", [("rgb", (16, 24, 40, 112)), ("rgbd", (32, 48, 80, 224))])
def test_effnet_backbone_taps_shapes_and_frozen_state(modality, taps):
    from brainrecon.models.effnet import load_effnet_lite0
    from brainrecon.models.effnet_taps import build_effnet
    enc = Encoder(EncoderArch(n_voxels=20, modality=modality, arch="effnet-lite0", input_size=32, head_channels=8,
                              dropout=0), build_effnet(True))
    shipped = load_effnet_lite0().state_dict()
    for k, v in enc.backbone.net.state_dict().items():  # the ImageNet weights, as shipped
        torch.testing.assert_close(v, shipped[k], rtol=0, atol=0)
    x = torch.rand(3, N_CHANNELS[modality], 32, 32)
    feats = enc.backbone_features(x)
    assert [tuple(feats[n].shape) for n in ("conv1", "conv2", "conv3", "conv4")] == \
        [(3, c, 64 // s, 64 // s) for c, s in zip(taps, (2, 4, 8, 16))]   # the VGG taps' sides at input 32
    enc.train()
    assert not enc.backbone.net.training and not any(p.requires_grad for p in enc.backbone.parameters())
    running = enc.backbone.net.bn1.running_mean.clone()
    enc(x).sum().backward()
    torch.testing.assert_close(enc.backbone.net.bn1.running_mean, running, rtol=0, atol=0)
    assert all(p.grad is None for p in enc.backbone.parameters())


@pytest.mark.parametrize("modality,depth_input,taps", [("rgbd", "stem", (16, 24, 40, 112)),
                                                       ("rgbd", "branch", (32, 48, 80, 224)),
                                                       ("depth", "branch", (16, 24, 40, 112))])
def test_effnet_depth_inputs_train_only_their_depth_part(modality, depth_input, taps):
    """stem / branch: the shipped network stays frozen (weights, BN statistics, no gradient), the new depth part
    trains (gradient, BN in train mode), and the taps keep the VGG taps' sides."""
    from brainrecon.models.effnet_taps import build_effnet
    enc = Encoder(EncoderArch(n_voxels=20, modality=modality, arch="effnet-lite0", input_size=32, head_channels=8,
                              dropout=0, depth_input=depth_input), build_effnet(True))
    x = torch.rand(3, N_CHANNELS[modality], 32, 32)
    feats = enc.backbone_features(x)
    assert [tuple(feats[n].shape) for n in ("conv1", "conv2", "conv3", "conv4")] == \
        [(3, c, 64 // s, 64 // s) for c, s in zip(taps, (2, 4, 8, 16))]
    enc.train()
    (part,) = enc.backbone.depth_parts()
    assert part.training and not enc.backbone.net.training
    assert not any(p.requires_grad for p in enc.backbone.net.parameters())
    if depth_input == "stem":  # starts as the RGB kernels' mean, so depth enters like a grey image's luminance
        torch.testing.assert_close(part.weight, enc.backbone.net.conv_stem.weight.mean(1, keepdim=True))
    net = {k: v.clone() for k, v in enc.backbone.net.state_dict().items()}
    enc(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert all(p.grad is None for p in enc.backbone.net.parameters())
    for k, v in enc.backbone.net.state_dict().items():
        torch.testing.assert_close(v, net[k], rtol=0, atol=0)
    if depth_input == "stem":  # depth changes the features only through the stem column
        enc.eval()
        with torch.no_grad():
            part.weight.zero_()
            a = enc.backbone_features(x)
            b = enc.backbone_features(torch.cat([x[:, :3], torch.rand(3, 1, 32, 32)], 1))
        torch.testing.assert_close(a["conv4"], b["conv4"])


def test_depth_input_options_are_validated():
    from brainrecon.errors import ConfigError
    for modality, sets, words in (("depth", ["model.depth_input=stem"], "rgbd only"),
                                  ("rgb", ["model.depth_input=branch"], "needs depth"),
                                  ("rgbd", ["model.depth_input=plane"], "choose grey, stem or branch"),
                                  ("rgbd", ["model.arch=vgg19", "model.depth_input=branch"], "effnet-lite0")):
        with pytest.raises(ConfigError, match=words):
            load_config("encoder", modality, "demo", sets)


def test_effnet_encoder_and_decoder_end_to_end_with_the_ceiling_row(tiny_subject, tmp_path):
    """--config demo with model.arch=effnet-lite0: encoder, self-supervised decoder, reconstruct with D(E(x)),
    evaluate scoring D(E(x)) as a row of its own."""
    from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
    from brainrecon.reconstruct import load_reconstructions, reconstruct, with_ceilings
    from brainrecon.train.decoder import train_decoder
    sets = tiny_overrides(**{"train.epochs": 1, "train.milestones": "[]", "model.input_size": 32,
                             "model.arch": "effnet-lite0", "model.width": 1.0, "model.backbone_weights": "imagenet"})
    metrics = train_encoder(load_config("encoder", "rgbd", "demo", sets), tiny_subject, tmp_path / "enc", quiet=True)
    assert np.isfinite(metrics["median_r"])
    assert load_encoder(tmp_path / "enc").arch.arch == "effnet-lite0"
    dec = load_config("decoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.milestones": "[]", "train.unpaired_image_batch": 8, "train.unpaired_fmri_batch": 8,
        "train.batch_size": 16, "loss.perceptual_width": 0.125, "loss.perceptual_net": "vgg16-random",
        "loss.perceptual_weights": "[10,10,10,10,2]"}))
    train_decoder(dec, tiny_subject, tmp_path / "dec", encoder_run=tmp_path / "enc", quiet=True)
    reconstruct(tmp_path / "dec", "test", data_dir=tiny_subject)
    rec = load_reconstructions(tmp_path / "dec")
    assert rec["ceiling_reconstructions"].shape == rec["reconstructions"].shape
    runs = with_ceilings([rec])
    records, _ = evaluate_runs(runs, EvalOptions(ways=(2,), metrics=("pixcorr",), repeats=10), tiny_subject)
    assert {r["run"] for r in records} == {"dec", "dec D(E(x))"}
