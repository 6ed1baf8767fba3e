"""The demo's stages: options checked before any work, and a rerun that never reuses a stage made differently."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from brainrecon.demo import BUDGETS, STAGE_RECORD, DemoBudget, Stages, run_demo
from brainrecon.errors import UserError
from tests.conftest import TINY, tiny_overrides

TINY_SETS = tuple(tiny_overrides(**{"train.milestones": "[]", "train.threads": 1}))
ENCODER_SETS = ("model.input_size=32", "model.head_channels=8")
DECODER_SETS = ("train.epochs=1", "train.unpaired_image_batch=8", "train.unpaired_fmri_batch=4")


def tiny_budget(name: str, encoder_epochs: int = 1) -> DemoBudget:
    sim = replace(TINY, n_unpaired=32)
    return DemoBudget(name, sim, "demo", (*ENCODER_SETS, f"train.epochs={encoder_epochs}"), DECODER_SETS,
                      sets=TINY_SETS)


def test_bad_modality_exits_2_before_any_work(tmp_path):
    result = subprocess.run([sys.executable, "-m", "brainrecon", "demo", "--modality", "foo", "--out",
                             str(tmp_path / "demo")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--modality 'foo'" in result.stderr and "rgb, depth, rgbd" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "demo").exists()                                # nothing simulated, no folder made


def test_budgets_resolve_to_valid_configs():
    from brainrecon.config import load_config
    for budget in BUDGETS.values():
        for stage in ("encoder", "decoder"):
            cfg = load_config(stage, "rgbd", budget.preset, [*budget.sets])
            assert cfg.data.resolution == budget.simulation.resolution


@pytest.mark.slow   # three short demo runs (30 s): in the slow pass, to keep the default one short
def test_rerun_with_other_settings_recomputes_what_depends_on_them(tmp_path):
    """Same budget: every stage reused. An encoder trained otherwise: the encoder, the decoder and its
    reconstructions are computed again (said on screen); the simulated data and ridge are reused."""
    said: list[str] = []
    out = tmp_path / "demo"
    first = run_demo(out, "rgbd", tiny_budget("a"), say=said.append, quiet=True)
    assert set(first["stage_seconds"]) >= {"simulate", "train-encoder", "train-decoder", "ridge"}
    enc_key = Stages.key_of(out / "encoder_rgbd")

    said.clear()
    again = run_demo(out, "rgbd", tiny_budget("a"), say=said.append, quiet=True)
    assert not set(again["stage_seconds"]) & {"simulate", "train-encoder", "train-decoder", "ridge"}
    assert any("train-encoder: already done" in s for s in said)

    said.clear()
    other = run_demo(out, "rgbd", tiny_budget("b", encoder_epochs=2), say=said.append, quiet=True)
    assert {"train-encoder", "train-decoder"} <= set(other["stage_seconds"])
    assert "simulate" not in other["stage_seconds"] and "ridge" not in other["stage_seconds"]
    assert any("encoder_rgbd: made with other settings" in s and "config" in s for s in said)
    assert Stages.key_of(out / "encoder_rgbd") != enc_key
    assert json.loads((out / "encoder_rgbd" / "metrics.json").read_text())["epochs"] == 2
    record = json.loads((out / "decoder_rgbd" / STAGE_RECORD).read_text())
    assert record["what"]["encoder"] == Stages.key_of(out / "encoder_rgbd")


def test_a_folder_the_demo_did_not_make_is_not_touched(tmp_path):
    out = tmp_path / "demo"
    (out / "data").mkdir(parents=True)
    (out / "data" / "mine.txt").write_text("a user's file")
    with pytest.raises(UserError, match="not written by brainrecon demo"):
        run_demo(out, "rgbd", tiny_budget("a"), say=lambda s: None, quiet=True)
    assert (out / "data" / "mine.txt").exists()


def test_seed_and_device_reach_both_trainers(tmp_path, monkeypatch):
    """`demo --seed 2 --device cuda:1`: both networks train with train.seed 2 on that device, and the stage records
    carry them (so a rerun with another seed trains again). The trainers are stand-ins; the decoder's stops the run."""
    seen = {}

    class Stop(Exception):
        pass

    def fake_encoder(cfg, data, run_dir, **kwargs):
        seen["encoder"] = (cfg.train.seed, cfg.train.device)
        return {"median_r": 0.0, "median_r_over_ceiling": 0.0, "seconds": 0.0}

    def fake_decoder(cfg, data, run_dir, **kwargs):
        seen["decoder"] = (cfg.train.seed, cfg.train.device)
        raise Stop
    monkeypatch.setattr("brainrecon.simulation.simulate.simulate_subject", lambda folder, config: {"rois": {"VC": 1}})
    monkeypatch.setattr("brainrecon.train.encoder.train_encoder", fake_encoder)
    monkeypatch.setattr("brainrecon.train.decoder.train_decoder", fake_decoder)
    with pytest.raises(Stop):
        run_demo(tmp_path / "demo", "rgbd", tiny_budget("a"), say=lambda s: None, quiet=True, seed=2, device="cuda:1")
    assert seen["encoder"] == seen["decoder"] == (2, "cuda:1")          # the budget's own train.device is cpu
    for stage in ("encoder_rgbd", "decoder_rgbd"):
        record = json.loads((tmp_path / "demo" / stage / STAGE_RECORD).read_text())
        assert record["what"]["config"]["train"]["seed"] == 2
