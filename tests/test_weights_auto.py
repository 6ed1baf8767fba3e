"""`auto` never trains on a random network: the paper's weights, or one line naming what is missing and the two
ways forward; a stand-in named explicitly is announced and recorded."""

from __future__ import annotations

import pytest
import torch

from brainrecon.errors import UserError
from brainrecon.models import perceptual


def test_auto_is_the_papers_network():
    assert perceptual.resolve_kind("auto", "rgb", None) == "vgg16-imagenet"
    assert perceptual.resolve_kind("auto", "rgbd", None) == "vgg16-release"
    assert perceptual.resolve_kind("auto", "depth", None) == "vgg16-release"
    assert perceptual.resolve_kind("vgg16-random", "rgb", None) == "vgg16-random"


def test_auto_rgb_offline_without_cached_weights_stops(tmp_path, monkeypatch):
    """No torchvision weights in the hub cache, no network (conftest refuses it): one line, never a random VGG."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError) as e:
        perceptual.build_perceptual_net("auto", "rgb", tmp_path)
    msg = str(e.value)
    assert "not in the torch hub cache" in msg and "connect to the internet once" in msg
    assert "effnet-lite0" in msg and "vgg16-random" in msg and "\n" not in msg


def test_auto_rgbd_without_the_release_file_names_fetch_data(tmp_path):
    with pytest.raises(UserError, match="fetch-data --only vgg.*effnet-lite0"):
        perceptual.build_perceptual_net("auto", "rgbd", tmp_path)


def test_a_stand_in_is_announced_and_recorded(tiny_subject, tmp_path, capsys):
    from brainrecon.config import load_config
    from brainrecon.train.decoder import train_decoder
    from tests.conftest import tiny_overrides
    cfg = load_config("decoder", "rgb", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.self_supervision": "false", "loss.perceptual_net": "vgg16-random",
        "loss.perceptual_width": 0.25, "loss.perceptual_weights": "[10,10,10,10,2]"}))
    metrics = train_decoder(cfg, tiny_subject, tmp_path / "run", quiet=True)
    assert metrics["perceptual_net"] == "vgg16-random"
    err = capsys.readouterr().err
    assert "perceptual loss on vgg16-random" in err and "stand-in for the paper's vgg16-imagenet" in err


def test_paper_decoder_preset_without_weights_does_not_train(tiny_subject, tmp_path):
    from brainrecon.config import load_config
    from brainrecon.train.decoder import train_decoder
    from tests.conftest import tiny_overrides
    cfg = load_config("decoder", "rgbd", "paper", tiny_overrides(**{"train.epochs": 1, "model.channels": 32,
                                                                     "train.self_supervision": "false"}))
    assert cfg.loss.perceptual_net == "auto"
    with pytest.raises(UserError, match="fetch-data --only vgg"):
        train_decoder(cfg, tiny_subject, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "last.pt").exists()
