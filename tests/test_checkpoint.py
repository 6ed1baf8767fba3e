"""Resume gives the same weights as an uninterrupted run; Ctrl-C leaves a resumable checkpoint."""

import pytest
import torch

from brainrecon.atomic import write_atomic
from brainrecon.config import load_config
from brainrecon.errors import Interrupted, UserError
from brainrecon.train import checkpoint
from brainrecon.train.encoder import train_encoder
from tests.conftest import tiny_overrides


def encoder_cfg(epochs):
    return load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": epochs, "train.batch_size": 32, "train.milestones": "[1]", "model.input_size": 32,
        "loss.pad_percent": 10, "model.dropout": 0.3}))


def test_resume_equals_uninterrupted(tiny_subject, tmp_path):
    train_encoder(encoder_cfg(3), tiny_subject, tmp_path / "full", quiet=True)
    # "kill" after 2 epochs: a run configured for 3 that stopped; emulate by running 2 then editing nothing
    cfg = encoder_cfg(3)
    import brainrecon.train.loop as loop
    real_fit = loop.fit

    def stop_after_two(**kw):
        calls = {"n": 0}
        inner = kw["train_epoch"]

        def train_epoch(epoch):
            if calls["n"] == 2:
                raise KeyboardInterrupt
            calls["n"] += 1
            return inner(epoch)
        kw["train_epoch"] = train_epoch
        return real_fit(**kw)
    import brainrecon.train.encoder as enc_mod
    enc_mod.fit = stop_after_two
    try:
        with pytest.raises(Interrupted, match="--resume"):
            train_encoder(cfg, tiny_subject, tmp_path / "resumed", quiet=True)
    finally:
        enc_mod.fit = real_fit
    assert checkpoint.load(tmp_path / "resumed/last.pt")["epoch"] == 1
    with pytest.raises(UserError, match="--resume"):
        train_encoder(cfg, tiny_subject, tmp_path / "resumed", quiet=True)
    train_encoder(cfg, tiny_subject, tmp_path / "resumed", resume=True, quiet=True)
    a = checkpoint.load(tmp_path / "full/last.pt")["model"]
    b = checkpoint.load(tmp_path / "resumed/last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_refuses_a_different_config(tiny_subject, tmp_path):
    train_encoder(encoder_cfg(1), tiny_subject, tmp_path / "run", quiet=True)
    with pytest.raises(UserError, match="different config"):
        train_encoder(encoder_cfg(2), tiny_subject, tmp_path / "run", resume=True, quiet=True)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def broken(path):
        path.write_text("partial")
        raise RuntimeError("crash")
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.pt", broken)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_load_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"model": Evil()}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")
