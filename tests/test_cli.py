"""The CLI layer: help, exit codes, one-line errors, and the quick demo end to end."""

import json

from typer.testing import CliRunner

from brainrecon.cli import app

COMMANDS = ("fetch-data", "simulate", "make-depth", "train-encoder", "train-decoder", "reconstruct", "evaluate",
            "demo")


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for c in COMMANDS:
        assert c in result.output


def test_bad_config_key_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["train-encoder", "--set", "train.epoch=3", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "valid keys" in result.output and "Traceback" not in result.output


def test_missing_data_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["train-decoder", "--model", "ridge", "--data-dir", str(tmp_path / "none"),
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "fetch-data" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_ways_is_a_user_error(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--ways", "2,x"])
    assert result.exit_code == 2 and "--ways" in result.output


def test_simulate_cli(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--n-voxels", "80", "--n-unpaired", "4",
                                      "--resolution", "16"])
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.output and json.loads((tmp_path / "simulated.json").read_text())["simulated"]


def test_demo_quick_end_to_end(tmp_path):
    """The whole pipeline in about two minutes; re-running resumes finished stages."""
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.output
    assert (tmp_path / "decoder_rgbd/reconstruct_test/gallery.png").exists()
    records = json.loads((tmp_path / "evaluation/identification.json").read_text())
    two_way = [r for r in records if r["ways"] == 2 and r["metric"] == "pixcorr" and r["channel"] == "rgb"][0]
    assert two_way["ci_low"] > two_way["chance"], two_way      # above chance by more than its CI
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert again.exit_code == 0 and again.output.count("already done") == 4
