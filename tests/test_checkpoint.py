"""Resume gives the same weights as an uninterrupted run; Ctrl-C leaves a resumable checkpoint."""

import pytest
import torch

from brainrecon.atomic import write_atomic
from brainrecon.config import load_config
from brainrecon.errors import Interrupted, UserError
from brainrecon.train import checkpoint
from brainrecon.train.encoder import train_encoder
from tests.conftest import tiny_overrides


def encoder_cfg(epochs, amp=False):
    return load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": epochs, "train.batch_size": 32, "train.milestones": "[1]", "model.input_size": 32,
        "loss.pad_percent": 10, "model.dropout": 0.3, "train.amp": str(amp).lower()}))


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.filterwarnings("ignore:train.amp is true")
def test_resume_equals_uninterrupted(tiny_subject, tmp_path, amp):
    train_encoder(encoder_cfg(3, amp), tiny_subject, tmp_path / "full", quiet=True)
    # "kill" after 2 epochs: a run configured for 3 that stopped; emulate by running 2 then editing nothing
    cfg = encoder_cfg(3, amp)
    import brainrecon.train.loop as loop
    real_fit = loop.fit

    def stop_after_two(*args, **kw):
        calls = {"n": 0}
        inner = kw["train_epoch"]

        def train_epoch(epoch):
            if calls["n"] == 2:
                raise KeyboardInterrupt
            calls["n"] += 1
            return inner(epoch)
        kw["train_epoch"] = train_epoch
        return real_fit(*args, **kw)
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
    train_encoder(encoder_cfg(2), tiny_subject, tmp_path / "run", quiet=True)
    changed = encoder_cfg(2)
    changed.train.lr = 5e-4
    with pytest.raises(UserError, match="different config"):
        train_encoder(changed, tiny_subject, tmp_path / "run", resume=True, quiet=True)
    shorter = encoder_cfg(2)
    shorter.train.epochs = 1          # (load_config refuses the milestone [1] in a 1-epoch run before any resume)
    with pytest.raises(UserError, match="already trained 2 epochs"):
        train_encoder(shorter, tiny_subject, tmp_path / "run", resume=True, quiet=True)


def test_resume_after_an_upgrade_that_added_settings(tiny_subject, tmp_path):
    """A run started before a setting existed (its last.pt config lacks the key) resumes: the new key's default is
    what it trained with. A real change is still refused."""
    from brainrecon.config import to_dict
    run = tmp_path / "run"
    train_encoder(encoder_cfg(2), tiny_subject, run, quiet=True)
    state = checkpoint.load(run / checkpoint.LAST)
    del state["config"]["model"]["ridge_pool"], state["config"]["ridge_folds"]
    checkpoint.save(run / checkpoint.LAST, **state)
    fingerprint = state["data_fingerprint"]
    assert checkpoint.resume_state(run, to_dict(encoder_cfg(3)), fingerprint)["epoch"] == 1
    changed = encoder_cfg(3)
    changed.train.lr = 5e-4
    with pytest.raises(UserError, match="different config"):
        checkpoint.resume_state(run, to_dict(changed), fingerprint)


def test_resume_with_more_epochs_equals_the_longer_run(tiny_subject, tmp_path):
    """`--resume --epochs N+k` after N epochs continues to N+k, bit-exact with an uninterrupted N+k run."""
    train_encoder(encoder_cfg(3), tiny_subject, tmp_path / "full", quiet=True)
    train_encoder(encoder_cfg(2), tiny_subject, tmp_path / "longer", quiet=True)
    metrics = train_encoder(encoder_cfg(3), tiny_subject, tmp_path / "longer", resume=True, quiet=True)
    assert metrics["epochs"] == 3
    for name in (checkpoint.LAST, checkpoint.BEST):
        a = checkpoint.load(tmp_path / "full" / name)
        b = checkpoint.load(tmp_path / "longer" / name)
        assert a["epoch"] == b["epoch"]
        for k in a["model"]:
            torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert (tmp_path / "longer/config.yaml").read_text() == (tmp_path / "full/config.yaml").read_text()


def test_no_validation_split_keeps_the_last_epoch(tiny_subject, tmp_path):
    """With data.val_fraction 0 nothing selects on the test set: best.pt is the last epoch, and says so."""
    import json

    from brainrecon.train.decoder import train_decoder
    cfg = load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 2, "model.input_size": 32, "data.val_fraction": 0}))
    m = train_encoder(cfg, tiny_subject, tmp_path / "enc", quiet=True)
    assert m["selected_by"] == "last epoch: no validation split (data.val_fraction 0)" and m["best_epoch"] == 2
    dcfg = load_config("decoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 2, "data.val_fraction": 0, "loss.perceptual_net": "none", "train.milestones": "[]"}))
    train_decoder(dcfg, tiny_subject, tmp_path / "dec", encoder_run=tmp_path / "enc", quiet=True)
    d = json.loads((tmp_path / "dec/metrics.json").read_text())
    assert d["selected_by"] == "last epoch: no validation split (data.val_fraction 0)" and d["best_epoch"] == 2
    assert checkpoint.load(tmp_path / "dec" / checkpoint.BEST)["epoch"] == 1
    assert all("val_loss_D" not in json.loads(s) for s in (tmp_path / "dec/metrics.jsonl").read_text().splitlines())
    with_val = train_encoder(load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "model.input_size": 32})), tiny_subject, tmp_path / "enc_val", quiet=True)
    assert with_val["selected_by"].startswith("lowest val_loss on the validation split")


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
