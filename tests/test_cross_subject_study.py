"""The cross-subject ablation study's wiring (benchmarks/cross_subject.py), without training: which encoder drives
each arm's cycles, which decoders start from the group's, that the initialisation-only arm overrides the budget, and
that the reference (both cycles on all pairs) is paired with every point's arms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import benchmarks.cross_subject as cross
import benchmarks.few_pairs as few


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_train(stage, data, run, sets, **kwargs):
        seen.append({"stage": stage, "run": Path(run), "sets": list(sets), **kwargs})
        return Path(run)

    for module in (few, cross):
        monkeypatch.setattr(module, "train", fake_train)
        monkeypatch.setattr(module, "recon", lambda data, run: run)
        monkeypatch.setattr(module, "data_dir", lambda out, regime: Path(out) / regime / "data")
    return seen


def _decoder(calls, folder: str, cell: str) -> dict:
    return next(c for c in calls if c["stage"] == "decoder" and c["run"].parent.name == cell
                and c["run"].name == folder)


def _setting(call: dict, key: str) -> str | None:
    values = [s.split("=", 1)[1] for s in call["sets"] if s.startswith(key + "=")]
    return values[-1] if values else None                 # the last one given wins (load_config's order)


def test_every_arm_gets_its_encoder_and_its_start(calls, tmp_path):
    cross.study(tmp_path, n_seeds=1, points=(1 / 8,))
    root = tmp_path / "standard" / "study"
    group_dec = root / "group_decoder_seed0_e16"
    group_enc = root / "group_encoder_seed0_e40_val"
    adapted_enc = root / "encoder_1of8_seed0_e40_val_from_group"
    own_enc = root / "encoder_1of8_seed0_e40_val"
    g = next(c for c in calls if c["run"] == group_dec)
    assert g["encoder_run"] == group_enc and _setting(g, "data.subjects") == "[1,2,3,4]"
    a = next(c for c in calls if c["run"] == adapted_enc)
    assert _setting(a, "train.init_from") == str(group_enc) and _setting(a, "data.pairs") == str(1 / 8)
    expect = {"adapted__both_cycles": (adapted_enc, group_dec), "adapted__pairs_only": (None, group_dec),
              "adapted__no_fine_tuning": (None, group_dec),
              "both_cycles__encoder_adapted_from_a_group": (adapted_enc, None),
              "scratch_encoder__adapted_decoder": (own_enc, group_dec), "both_cycles": (own_enc, None),
              "pairs_only": (None, None), "ridge": (None, None)}
    for folder, (enc, init) in expect.items():
        c = _decoder(calls, folder, "1of8_seed0")
        assert c.get("encoder_run") == enc, folder
        assert _setting(c, "train.init_from") == (str(init) if init else None), folder
        assert _setting(c, "data.unpaired_fmri") is None          # COMMON (inductive) is added by few_pairs.train
    nft = _decoder(calls, "adapted__no_fine_tuning", "1of8_seed0")
    assert _setting(nft, "train.lr") == "1e-12" and _setting(nft, "train.epochs") == "1"
    assert _setting(nft, "train.steps_per_epoch") == "1" and _setting(nft, "train.milestones") == "[]"
    ref = _decoder(calls, "both_cycles", "all_seed0")
    assert ref["encoder_run"] == root / "encoder_all_seed0_e40_val" and _setting(ref, "data.pairs") == "0"


def test_few_pairs_group_arm_and_oracle_use_the_encoders_they_name(calls, tmp_path):
    few.study(tmp_path, "hard", n_seeds=1, arms=("both cycles, encoder adapted from a group",
                                                   "both cycles, encoder on all pairs (oracle)"), points=(1 / 16,))
    root = tmp_path / "hard" / "study"
    assert _decoder(calls, "both_cycles__encoder_adapted_from_a_group", "1of16_seed0")["encoder_run"] == \
        root / "encoder_1of16_seed0_e40_val_from_group"
    assert _decoder(calls, "both_cycles__encoder_on_all_pairs__oracle", "1of16_seed0")["encoder_run"] == \
        root / "encoder_all_seed0_e40_val"


def test_the_reference_is_paired_with_every_point():
    v = {0: np.ones(3)}
    scores = {("standard", "both cycles", "all", "rgb", "ssim"): v,
              ("standard", "both cycles", "1of8", "rgb", "ssim"): {0: np.zeros(3)}}
    out = cross.with_reference(scores)
    assert all(out[("standard", cross.REFERENCE, few.label(p), "rgb", "ssim")] is v for p in cross.POINTS)
    assert out[("standard", "both cycles", "1of8", "rgb", "ssim")][0].sum() == 0


def test_few_pairs_held_out_and_ridge_encoder_arms(calls, tmp_path):
    """The ridge read-out arm's cycles run through a ridge encoder of the same pairs (with its validation split held
    out, for the held-out switches); the two held-out switches through the arm's own encoder."""
    arms = ("both cycles, ridge read-out encoder", "both cycles, residual ED noise",
            "both cycles, encoder-r DE weights")
    few.study(tmp_path, "hard", n_seeds=1, arms=arms, points=(1 / 16,))
    root = tmp_path / "hard" / "study"
    ridge = next(c for c in calls if c["stage"] == "encoder" and c["run"].name == "encoder_1of16_seed0_ridge")
    assert _setting(ridge, "model.kind") == "ridge" and _setting(ridge, "data.val_fraction") == "0.05"
    assert _setting(ridge, "data.pairs") == str(1 / 16) and _setting(ridge, "train.seed") == "0"
    assert _decoder(calls, "both_cycles__ridge_read_out_encoder", "1of16_seed0")["encoder_run"] == ridge["run"]
    own = root / "encoder_1of16_seed0_e40_val"
    noise = _decoder(calls, "both_cycles__residual_ED_noise", "1of16_seed0")
    assert noise["encoder_run"] == own and _setting(noise, "loss.ed_noise_from") == "residual"
    weights = _decoder(calls, "both_cycles__encoder_r_DE_weights", "1of16_seed0")
    assert weights["encoder_run"] == own and _setting(weights, "loss.de_voxel_weights") == "encoder_r"
