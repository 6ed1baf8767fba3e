import json

import numpy as np
import pytest
import torch
import yaml

from brainrecon import losses
from brainrecon.config import load_config
from brainrecon.data.datasets import unpaired_fmri_batch
from brainrecon.errors import UserError
from brainrecon.models.decoder import Decoder, DecoderArch
from brainrecon.models.perceptual import build_perceptual_net
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder
from tests.conftest import tiny_overrides


@pytest.mark.parametrize("modality,chans", [("rgb", 3), ("depth", 1), ("rgbd", 4)])
def test_decoder_shapes(modality, chans):
    dec = Decoder(DecoderArch(n_voxels=30, modality=modality, channels=32, start_size=14))
    out = dec(torch.randn(2, 30))
    assert out.shape == (2, chans, 112, 112) and out.min() >= 0 and out.max() <= 1
    assert dec.input_map().shape == (30, 32, 14, 14)


@pytest.mark.parametrize("size,memory_format", [(7, torch.contiguous_format), (14, torch.channels_last),
                                                 ((8, 5), torch.contiguous_format)])
def test_upsample_pad_equals_torch_bicubic_then_reflection(size, memory_format):
    """The decoder's matrix form of x2 bicubic + reflection padding is torch's own map: values and input gradients
    equal nn.Upsample + nn.ReflectionPad2d within float round-off, for odd, even and non-square maps."""
    from brainrecon.models.decoder import UpsamplePad
    h, w = size if isinstance(size, tuple) else (size, size)
    x = torch.randn(3, 32, h, w).to(memory_format=memory_format).requires_grad_()
    reference = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False),
                                    torch.nn.ReflectionPad2d(2))
    weight = torch.randn(3, 32, 2 * h + 4, 2 * w + 4)
    want = reference(x)
    (g_want,) = torch.autograd.grad((want * weight).sum(), x)
    got = UpsamplePad(2)(x)
    (g_got,) = torch.autograd.grad((got * weight).sum(), x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-4)


def test_image_loss_terms_zero_for_identical_and_positive_otherwise():
    net = build_perceptual_net("vgg16-random", "rgbd", None, width=0.25)
    loss = losses.ImageLoss("rgbd", torch.full((4,), 0.5), net)
    x = torch.rand(2, 4, 32, 32)
    same = loss(x, x.clone())
    for k, v in same.items():
        if k != "tv":
            assert float(v) < 1e-5, k
    diff = loss(torch.rand(2, 4, 32, 32), x)
    assert all(float(v) > 0 for v in diff.values())
    assert float(losses.total_variation(torch.ones(1, 1, 8, 8))) < 1e-9


def test_fmri_loss_and_decoder_group_lasso():
    y = torch.randn(4, 10)
    w = torch.ones(10)
    assert float(losses.fmri_loss(y, y, w)) < 1e-6 < float(losses.fmri_loss(y + 1, y, w))
    dense = torch.randn(3, 4, 6, 6, requires_grad=True)
    value = losses.decoder_group_lasso(dense, torch.ones(3), 40, 400)
    value.backward()
    assert value > 0 and torch.isfinite(dense.grad).all()


def test_unpaired_fmri_averages_a_subset_of_one_images_repeats():
    trials = torch.arange(3 * 4, dtype=torch.float32).view(3, 4, 1).expand(3, 4, 2).contiguous()
    out = unpaired_fmri_batch(trials, 50, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == (50, 2)
    # each sample averages 2 of the 4 repeats of a single image: its value lies within that image's range
    image = (out[:, 0] // 4).long()
    assert torch.all((out[:, 0] >= image * 4 + 0.5) & (out[:, 0] <= image * 4 + 2.5))
    full = unpaired_fmri_batch(trials, 8, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(full[:, 0] % 4, torch.full((8,), 1.5))


@pytest.fixture(scope="module")
def tiny_encoder(tiny_subject, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc")
    cfg = load_config("encoder", "rgbd", "demo", tiny_overrides(**{"train.epochs": 2, "model.input_size": 32,
                                                                  "train.milestones": "[]"}))
    train_encoder(cfg, tiny_subject, out, quiet=True)
    return out


def decoder_cfg(epochs=3, **extra):
    sets = {"train.epochs": epochs, "train.milestones": "[]", "train.warn_seconds": 0,
            "train.unpaired_image_batch": 8, "train.unpaired_fmri_batch": 8, "train.batch_size": 16,
            "loss.perceptual_width": 0.125, "loss.perceptual_net": "vgg16-random",
            "loss.perceptual_weights": "[10,10,10,10,2]"}
    sets.update(extra)
    return load_config("decoder", "rgbd", "demo", tiny_overrides(**sets))


def test_self_supervised_step_touches_only_the_decoder(tiny_subject, tiny_encoder, tmp_path, monkeypatch):
    """Run one epoch with all three terms on; encoder and perceptual network must be bit-identical afterwards,
    and every term must have been computed from its own source."""
    import brainrecon.train.decoder_step as mod
    seen = {}
    real_image_loss = mod.losses.ImageLoss
    nets = {}

    class Spy(real_image_loss):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            nets["perceptual"] = {k: v.clone() for k, v in self.net.state_dict().items()}
            nets["module"] = self.net
    monkeypatch.setattr(mod.losses, "ImageLoss", Spy)
    real_fmri = mod.unpaired_fmri_batch

    def spy_fmri(*a, **k):
        seen["fmri"] = seen.get("fmri", 0) + 1
        return real_fmri(*a, **k)
    monkeypatch.setattr(mod, "unpaired_fmri_batch", spy_fmri)
    before = {k: v.clone() for k, v in torch.load(tiny_encoder / "best.pt", weights_only=True)["model"].items()}
    train_decoder(decoder_cfg(1), tiny_subject, tmp_path / "dec", encoder_run=tiny_encoder, quiet=True)
    record = json.loads((tmp_path / "dec/metrics.jsonl").read_text().splitlines()[0])
    assert {"train_loss_D", "train_loss_ED", "train_loss_DE"} <= set(record)
    assert seen["fmri"] > 0
    after = torch.load(tiny_encoder / "best.pt", weights_only=True)["model"]
    for k in before:
        torch.testing.assert_close(before[k], after[k], rtol=0, atol=0)
    for k, v in nets["module"].state_dict().items():
        torch.testing.assert_close(v, nets["perceptual"][k], rtol=0, atol=0)


def test_short_run_lowers_every_loss_and_reconstructs(tiny_subject, tiny_encoder, tmp_path):
    m = train_decoder(decoder_cfg(4), tiny_subject, tmp_path / "dec", encoder_run=tiny_encoder, quiet=True)
    assert m["self_supervision"] and m["perceptual_net"] == "vgg16-random"
    hist = [json.loads(s) for s in (tmp_path / "dec/metrics.jsonl").read_text().splitlines()]
    for term in ("train_loss_D", "train_loss_ED", "train_loss_DE"):
        assert hist[-1][term] < hist[0][term], term
    npz = reconstruct(tmp_path / "dec", "test", data_dir=tiny_subject)
    rec = load_reconstructions(tmp_path / "dec")
    assert rec["reconstructions"].shape == rec["ground_truth"].shape == (12, 32, 32, 4)
    assert rec["reconstructions"].dtype == np.uint8 and str(rec["modality"]) == "rgbd"
    run_config = yaml.safe_load(str(rec["run_config"]))   # the run's resolved config travels with its reconstructions
    assert run_config == yaml.safe_load((tmp_path / "dec/config.yaml").read_text())
    assert run_config["modality"] == "rgbd" and run_config["model"]["kind"] == "deep"
    from PIL import Image
    with Image.open(npz.parent / "gallery.png") as g:
        assert g.size[0] > 3 * 32 * 4 and g.size[1] > 4 * 32
    assert len(list(npz.parent.glob("0*.png"))) == 12


def test_modality_mismatch_with_encoder(tiny_subject, tiny_encoder, tmp_path):
    cfg = load_config("decoder", "rgb", "demo", tiny_overrides(**{"train.epochs": 1}))
    with pytest.raises(UserError, match="trained on rgbd"):
        train_decoder(cfg, tiny_subject, tmp_path / "x", encoder_run=tiny_encoder, quiet=True)
    with pytest.raises(UserError, match="--encoder"):
        train_decoder(cfg, tiny_subject, tmp_path / "y", encoder_run=None, quiet=True)


@pytest.mark.parametrize("budget_mb", [64.0, 0.5])
def test_frozen_caches_leave_the_step_unchanged(tiny_subject, tiny_encoder, budget_mb):
    """A step with the caches (all items, or part of them: the rest is computed per step) gives the same losses and
    decoder gradients as one without, within float round-off; the caches hold what metrics.json says."""
    from brainrecon.runtime import setup
    from brainrecon.train.decoder import DecoderStep
    runtime = setup("cpu", False, 0)
    results = []
    for mb in (budget_mb, 0.0):
        step = DecoderStep(decoder_cfg(1, **{"train.cache_mb": mb}), runtime, tiny_subject, tiny_encoder)
        record = step.fill_caches()
        loss, logged = step.loss(torch.arange(16), torch.Generator().manual_seed(3))
        loss.backward()
        grads = {k: p.grad.clone() for k, p in step.raw.named_parameters()}
        results.append(({k: float(v.detach()) for k, v in logged.items()}, grads, record))
    (cached, g_cached, record), (plain, g_plain, none) = results
    assert none["encoder_voxels_unpaired"]["items"] == 0 and none["perceptual_paired"]["items"] == 0
    held = record["encoder_voxels_unpaired"]["items"]
    if budget_mb == 64.0:
        assert held == record["encoder_voxels_unpaired"]["of"] == 64
        assert record["perceptual_unpaired"]["items"] == 64 and record["perceptual_paired"]["items"] > 300
    else:  # half a megabyte: all voxels (64 x 150 floats), part of the paired features, no unpaired ones
        assert held == 64 and 0 < record["perceptual_paired"]["items"] < record["perceptual_paired"]["of"]
        assert record["perceptual_unpaired"]["items"] == 0
        assert record["encoder_voxels_unpaired"]["mb"] + record["perceptual_paired"]["mb"] <= 0.5
    assert cached.keys() == plain.keys() and {"loss_D", "loss_ED", "loss_DE"} <= set(cached)
    for k in cached:
        assert cached[k] == pytest.approx(plain[k], rel=1e-5, abs=1e-7), k
    # round-off on the scale of the whole gradient (the conv biases before GroupNorm have a true gradient of 0: theirs
    # is round-off alone)
    scale = max(float(g.abs().max()) for g in g_plain.values())
    for k in g_cached:
        torch.testing.assert_close(g_cached[k], g_plain[k], rtol=1e-4, atol=1e-5 * scale, msg=k)


def test_resumed_run_with_caches_equals_the_uninterrupted_one(tiny_subject, tiny_encoder, tmp_path):
    from brainrecon.train import checkpoint
    m = train_decoder(decoder_cfg(2), tiny_subject, tmp_path / "straight", encoder_run=tiny_encoder, quiet=True)
    assert m["frozen_cache"]["perceptual_paired"]["items"] > 0
    train_decoder(decoder_cfg(1), tiny_subject, tmp_path / "resumed", encoder_run=tiny_encoder, quiet=True)
    train_decoder(decoder_cfg(2), tiny_subject, tmp_path / "resumed", encoder_run=tiny_encoder, resume=True,
                  quiet=True)
    a = checkpoint.load(tmp_path / "straight/last.pt")["model"]
    b = checkpoint.load(tmp_path / "resumed/last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_de_cycle_reads_the_fmri_it_is_told_to_and_says_so(tiny_subject, tiny_encoder, tmp_path, monkeypatch):
    import brainrecon.train.decoder_step as mod
    shapes = []
    real = mod.unpaired_fmri_batch

    def spy(trials, *a, **k):
        shapes.append(tuple(trials.shape))
        return real(trials, *a, **k)
    monkeypatch.setattr(mod, "unpaired_fmri_batch", spy)
    m = train_decoder(decoder_cfg(1, **{"data.unpaired_fmri": "train"}), tiny_subject, tmp_path / "train",
                      encoder_run=tiny_encoder, quiet=True)
    assert m["unpaired_fmri"].startswith("train") and shapes and all(s[1] == 1 for s in shapes)
    assert shapes[0][0] == len(mod.load_paired(tiny_subject, decoder_cfg().data, "rgbd").train_fmri)
    shapes.clear()
    m = train_decoder(decoder_cfg(1), tiny_subject, tmp_path / "test", encoder_run=tiny_encoder, quiet=True)
    assert m["unpaired_fmri"].startswith("test") and "transductive" in m["unpaired_fmri"]
    assert all(s[:2] == (12, 6) for s in shapes)  # the test images x their repeats


def test_val_fraction_zero_uses_every_pair_every_epoch(tiny_subject, tiny_encoder, tmp_path, monkeypatch):
    import brainrecon.train.decoder_step as mod
    from brainrecon.runtime import Runtime
    from brainrecon.train.distributed import steps_per_epoch
    seen = []
    real = mod.DecoderStep.loss

    def spy(self, idx, gen):
        seen.append(idx.cpu())
        return real(self, idx, gen)
    monkeypatch.setattr(mod.DecoderStep, "loss", spy)
    train_decoder(decoder_cfg(1, **{"data.val_fraction": 0, "train.batch_size": 48}), tiny_subject, tmp_path / "d",
                  encoder_run=tiny_encoder, quiet=True)
    used = torch.cat(seen)
    assert sorted(used.tolist()) == list(range(400)) and len(seen[-1]) == 400 - 8 * 48  # last batch partial
    runtime = Runtime(device=torch.device("cpu"))
    assert steps_per_epoch(400, 48, runtime, every_pair=False) == 8 and steps_per_epoch(400, 48, runtime, True) == 9
