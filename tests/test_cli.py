"""The CLI layer: help, exit codes and one-line errors (the demo's own tests: test_demo.py, and the installed wheel's
demo end to end: test_install.py, slow)."""

import json

import typer
from typer.testing import CliRunner

from brainrecon.cli import app

COMMANDS = ("fetch-data", "simulate", "convert-god", "convert-nsd", "import-arrays", "make-depth", "train-encoder",
            "train-decoder", "reconstruct", "evaluate", "classify", "runs", "export", "demo", "config")


def test_help_lists_every_subcommand():
    assert sorted(typer.main.get_command(app).commands) == sorted(COMMANDS)   # a new command is added here too
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = [line.strip("│ ").split(" ")[0] for line in result.output.splitlines()]
    assert sorted(c for c in listed if c in COMMANDS) == sorted(COMMANDS), result.output  # each on a line of its own


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
                                      "--resolution", "16", "--luminance-share", "0.1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "simulated.json").read_text())
    assert "SIMULATED" in result.output and manifest["simulated"]
    model = manifest["encoding_model"]   # every parameter and its source travels with the subject
    assert model["luminance_share"] == 0.1 and model["rois"]["V1"]["n"] == 0.18 and model["rois"]["V3"]["k"] == 0.27
    assert any("Kay" in source for source in model["sources"].values())
    bad = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "x"), "--luminance-share", "1.5"])
    assert bad.exit_code == 2 and "--luminance-share" in bad.output and "Traceback" not in bad.output


def test_preset_for_other_data_names_the_fix(tiny_subject, tmp_path):
    """The 64 px demo preset on 32 px data: say the preset's size and both fixes, not a fetch-data hint."""
    result = CliRunner().invoke(app, ["train-encoder", "--config", "demo", "--data-dir", str(tiny_subject),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    out = " ".join(result.output.split())
    assert "configured for 64 px" in out and "simulate --resolution 64" in out and "--set data.resolution=32" in out
    assert "fetch-data" not in out


def test_evaluate_help_lists_every_metric():
    from brainrecon.config import ALL_METRICS
    result = CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    flat = " ".join(result.output.replace("│", " ").split())
    for metric in ALL_METRICS:
        assert metric in flat, metric
