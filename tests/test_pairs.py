"""Fewer training pairs (data.pairs / --pairs), the validation floor (data.val_min) and fixed-step epochs
(train.steps_per_epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.config import load_config
from brainrecon.data import release
from brainrecon.data.pair_subset import keep_pairs, validation_size
from brainrecon.errors import ConfigError, UserError
from brainrecon.runtime import Runtime
from brainrecon.train.decoder import train_decoder
from brainrecon.train.distributed import epoch_order, steps_per_epoch
from brainrecon.train.encoder import train_encoder
from conftest import tiny_overrides


def test_a_subset_is_exactly_n_whole_stimuli_nested_and_seeded():
    labels = np.repeat(np.arange(100), 3)[np.random.default_rng(1).permutation(300)]   # each stimulus shown 3 times
    a = keep_pairs(labels, 10, seed=0)
    assert len(a.stimuli) == 10 and len(a.rows) == 30                                  # every row of each kept one
    assert set(labels[a.rows]) == set(a.stimuli)
    assert np.array_equal(a.stimuli, keep_pairs(labels, 10, seed=0).stimuli)            # reproducible per seed
    assert not np.array_equal(a.stimuli, keep_pairs(labels, 10, seed=1).stimuli)        # and a different draw per seed
    assert set(a.stimuli) <= set(keep_pairs(labels, 0.25, seed=0).stimuli)              # nested: 10 inside 25
    assert len(keep_pairs(labels, 0.25, seed=0).stimuli) == 25
    assert len(keep_pairs(labels, 0, seed=0).rows) == 300                               # 0: all
    with pytest.raises(UserError, match="only 100 stimuli"):
        keep_pairs(labels, 101, seed=0)


def test_the_validation_split_has_a_floor_or_none():
    assert validation_size(1200, 0.05, 20)[0] == 60                                     # the paper's 5 %, unchanged
    n, rule = validation_size(300, 0.05, 20)
    assert n == 20 and "raised to the floor" in rule
    n, rule = validation_size(75, 0.05, 20)                                             # on the ramp
    assert n == 7 and "ramped down" in rule
    n, rule = validation_size(61, 0.05, 20)
    assert n == 0 and "last epoch" in rule
    assert validation_size(300, 0, 20)[0] == 0


def test_the_validation_rule_has_no_jump():
    """Over 10..3,000 kept pairs, at two floors: one more pair never leaves fewer training pairs, and the split
    never grows by more than one pair at a time except where 5 % passes the floor."""
    for floor in (20, 8):
        last_train, last_val = 0, 0
        for n in range(10, 3001):
            val = validation_size(n, 0.05, floor)[0]
            assert n - val >= last_train, (floor, n)
            assert val - last_val <= 1, (floor, n)
            last_train, last_val = n - val, val


def test_fixed_steps_per_epoch_draw_full_batches_from_further_shuffles():
    runtime = Runtime(device=torch.device("cpu"))
    assert steps_per_epoch(40, 16, runtime, False, fixed=7) == 7
    order = epoch_order(40, seed=3, epoch=0, runtime=runtime, at_least=7 * 16)
    assert len(order) >= 112 and torch.equal(order[:40], epoch_order(40, 3, 0, runtime))  # the first pass unchanged
    assert sorted(order[40:80].tolist()) == list(range(40))                                # then whole shuffles


def _encoder_cfg(**extra):
    return load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.batch_size": 16, "train.milestones": "[]", "model.input_size": 32, **extra}))


def test_both_deep_trainers_and_ridge_keep_exactly_the_requested_stimuli(tiny_subject, tmp_path):
    subject = release.load_subject(tiny_subject, 3, "VC")
    expected = keep_pairs(subject.train_labels, 40, seed=2).stimuli
    m = train_encoder(_encoder_cfg(**{"data.pairs": 40, "train.seed": 2, "train.steps_per_epoch": 2}), tiny_subject,
                      tmp_path / "enc", quiet=True)
    assert m["pairs"]["stimuli"] == 40 and m["pairs"]["rows"] == 40 and m["pairs"]["of_stimuli"] == 400
    assert m["pairs"]["validation_rows"] == 0 and "no validation split" in m["selected_by"]
    listed = json.loads((tmp_path / "enc/pairs.json").read_text())
    assert listed["kept_stimuli"] == expected.tolist()
    decoder_sets = {"data.pairs": 40, "train.seed": 2, "train.epochs": 1, "train.milestones": "[]",
                    "train.batch_size": 8, "loss.perceptual_net": "none", "train.self_supervision": "false"}
    for name, extra in (("deep", {}), ("ridge", {"model.kind": "ridge"})):
        cfg = load_config("decoder", "rgbd", "demo", tiny_overrides(**decoder_sets, **extra))
        d = train_decoder(cfg, tiny_subject, tmp_path / name, quiet=True)
        assert d["pairs"]["stimuli"] == 40, name
        assert json.loads((tmp_path / name / "pairs.json").read_text())["kept_stimuli"] == expected.tolist(), name


def test_ridge_fits_the_deep_decoders_training_pairs_and_holds_out_its_validation_stimuli(tiny_subject, tmp_path):
    from brainrecon.data.datasets import load_paired
    from brainrecon.train import checkpoint
    sets = {"data.pairs": 100, "data.val_fraction": 0.2, "data.val_min": 5, "train.seed": 3, "train.epochs": 1,
            "train.milestones": "[]", "train.batch_size": 8, "loss.perceptual_net": "none",
            "train.self_supervision": "false"}
    listed = {}
    for name, extra in (("deep", {}), ("ridge", {"model.kind": "ridge"})):
        cfg = load_config("decoder", "rgbd", "demo", tiny_overrides(**sets, **extra))
        train_decoder(cfg, tiny_subject, tmp_path / name, quiet=True)
        listed[name] = json.loads((tmp_path / name / "pairs.json").read_text())
    assert listed["ridge"]["validation_stimuli"] == listed["deep"]["validation_stimuli"]
    assert len(listed["ridge"]["validation_stimuli"]) == 20 and listed["ridge"]["validation_rows"] == 20
    assert "unused" in listed["ridge"]["validation_rule"]
    data = load_paired(tiny_subject, cfg.data, "rgbd", seed=3)
    state = checkpoint.load(tmp_path / "ridge" / checkpoint.BEST)["model"]
    assert torch.allclose(state["voxel_mean"], data.train_fmri.mean(0).float(), atol=1e-5)     # train rows only
    assert not torch.allclose(state["voxel_mean"], torch.cat([data.train_fmri, data.val_fmri]).mean(0).float(),
                              atol=1e-5)


def test_bad_pairs_values_are_one_line(tiny_subject, tmp_path):
    with pytest.raises(ConfigError, match="whole number of stimuli"):
        _encoder_cfg(**{"data.pairs": 2.5})
    result = CliRunner().invoke(app, ["train-encoder", "--data-dir", str(tiny_subject), "--config", "demo",
                                      "--pairs", "5000", "--out", str(tmp_path / "run"), "--set",
                                      "data.resolution=32", "--epochs", "1"])
    assert result.exit_code == 2 and "only 400 stimuli" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_the_validation_split_holds_whole_stimuli():
    from brainrecon.data.datasets import split_by_stimulus
    labels = np.repeat(np.arange(40), 3)[np.random.default_rng(2).permutation(120)]      # each stimulus shown 3 times
    val, train, held = split_by_stimulus(labels, 10, seed=0)
    assert set(labels[val]).isdisjoint(labels[train]) and set(labels[val]) == set(held)
    assert len(val) == 3 * len(held) and len(val) + len(train) == 120 and len(val) >= 10
    once = np.random.default_rng(3).permutation(50)                                       # one row per stimulus
    val, train, _ = split_by_stimulus(once, 5, seed=0)
    order = np.random.default_rng(0).permutation(50)
    assert np.array_equal(val, order[:5]) and np.array_equal(train, order[5:])         # the row split of before
    val, train, held = split_by_stimulus(labels, 0, seed=0, val_stimuli=np.array([1, 2]))
    assert sorted(set(labels[val])) == [1, 2]


def test_the_members_of_a_group_validate_on_the_same_images(tiny_subject, tmp_path):
    import shutil

    from brainrecon.data.group import load_members
    root = tmp_path / "two"
    shutil.copytree(tiny_subject, root)
    with np.load(root / "sbj_3.npz") as z:
        arrays = dict(z)
    order = np.random.default_rng(5).permutation(len(arrays["arr_3"]))   # subject 2 saw them in another order
    arrays["arr_0"], arrays["arr_3"] = arrays["arr_0"][order], arrays["arr_3"][order]
    np.savez(root / "sbj_2.npz", **arrays)
    cfg = _encoder_cfg(**{"data.subjects": "[3,2]", "data.val_fraction": 0.2})
    members = load_members(root, cfg.data, cfg.modality, seed=0)
    one, two = members.data[3].subset.val_stimuli, members.data[2].subset.val_stimuli
    assert len(one) > 0 and np.array_equal(np.sort(one), np.sort(two))


def test_a_decoder_records_an_encoder_of_other_pairs(tiny_subject, tmp_path):
    enc = tmp_path / "enc_all"
    train_encoder(_encoder_cfg(), tiny_subject, enc, quiet=True)
    cfg = load_config("decoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.batch_size": 8, "train.milestones": "[]", "data.pairs": 20,
        "train.unpaired_image_batch": 4, "train.unpaired_fmri_batch": 4, "loss.perceptual_net": "none",
        "train.warn_seconds": 0}))
    metrics = train_decoder(cfg, tiny_subject, tmp_path / "dec", encoder_run=enc, quiet=True)
    record = metrics["frozen_encoder_pairs"]
    assert record["same_pairs"] is False and record["encoder_pairs"] == "all" and record["decoder_pairs"] == 20
