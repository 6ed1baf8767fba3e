"""Small conventions of the command line: help printed once, a mistyped flag's suggestion, --seed, help texts a pip user
can read, early refusals, the preset a resolution mismatch names, and the multi-subject route's --config/--init-from."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainrecon.cli import app, main

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    """(argv, click command) of every command and group, the bare app and `config` included."""
    import typer
    group = typer.main.get_command(app)
    yield [], group
    for name, command in group.commands.items():
        yield [name], command
        for sub_name, sub in getattr(command, "commands", {}).items():
            yield [name, sub_name], sub


@pytest.mark.parametrize("argv", [[], ["config"]], ids=["brainrecon", "brainrecon config"])
def test_bare_group_prints_its_help_once(argv, capsys):
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Usage:") == 1, captured.out
    assert "Commands" in captured.out and not captured.err


def test_mistyped_flag_keeps_the_suggestion(capsys):
    assert main(["train-encoder", "--epoch", "3"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--epoch" in err
    assert "did you mean --epochs?" in err, err


@pytest.mark.parametrize("argv", [a for a, _ in _commands()], ids=lambda a: " ".join(a) or "brainrecon")
def test_help_has_no_placeholders_or_source_paths(argv, capsys, monkeypatch):
    """Every --help as a user sees it (usage line, arguments, options, epilog): no typer-style `{RUN}` or
    `<list[Path]>`/`<path>` placeholders, no path into the source tree (`brainrecon/...`, `x.py`) or the repository's
    docs/ (a pip install has neither)."""
    monkeypatch.setenv("COLUMNS", "100")
    assert main([*argv, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage:" in text
    assert "{" not in text and "}" not in text, text
    assert not re.search(r"<(list|path|int|str|float|bool)", text, re.I), text
    assert not re.search(r"brainrecon/|docs/|\w\.py\b", text), text


def test_help_strings_in_the_source_have_no_placeholders():
    """The help= and metavar= texts themselves, as written (a check that does not depend on rendering)."""
    for argv, command in _commands():
        for param in getattr(command, "params", []):
            for text in (getattr(param, "help", None) or "", param.metavar or ""):
                assert not re.search(r"[{}]|<list|brainrecon/|docs/|\w\.py\b", text), (argv, param.name, text)


def _fake_trainer(monkeypatch, module: str, name: str, metrics: dict) -> dict:
    seen = {}

    def fake(cfg, root, out, **kwargs):
        seen["cfg"] = cfg
        return metrics
    monkeypatch.setattr(f"brainrecon.train.{module}.{name}", fake)
    return seen


ENCODER_METRICS = {"median_r": 0.1, "median_r_over_ceiling": 0.2, "epochs": 1, "seconds": 1.0}
DECODER_METRICS = {"test_pixcorr": 0.3, "selected_by": "last epoch", "seconds": 1.0, "subjects": {"3": {}}}


@pytest.mark.parametrize("command,module,name,metrics", [
    ("train-encoder", "encoder", "train_encoder", ENCODER_METRICS),
    ("train-decoder", "decoder", "train_decoder", DECODER_METRICS)])
def test_seed_sets_train_seed(command, module, name, metrics, monkeypatch, tmp_path, capsys):
    seen = _fake_trainer(monkeypatch, module, name, metrics)
    assert main([command, "--seed", "7", "--out", str(tmp_path / "run")]) == 0
    assert seen["cfg"].train.seed == 7
    out = capsys.readouterr().out
    assert "--subject N" not in out                      # a one-subject run is not offered a choice of subjects
    assert main([command, "--seed", "7", "--set", "train.seed=8"]) == 2
    assert "--seed 7 and --set train.seed=8" in capsys.readouterr().err


def test_seed_help_says_what_it_seeds(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for command in ("train-encoder", "train-decoder"):
        assert main([command, "--help"]) == 0
        flat = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert "--seed N Training seed (train.seed;" in flat and "--pairs draw" in flat


def _group_run(tmp_path: Path, stage: str) -> Path:
    """A group run folder as far as --config and --init-from read it: its config.yaml and a best.pt."""
    run = tmp_path / f"g_{stage}"
    run.mkdir()
    from brainrecon.config import load_config, to_yaml
    (run / "config.yaml").write_text(to_yaml(load_config(stage, "rgbd", "demo,fast", ["data.subjects=[1,2,4]"])))
    (run / "best.pt").write_bytes(b"not read here")
    return run


@pytest.mark.parametrize("command,stage,module,name,metrics", [
    ("train-encoder", "encoder", "encoder", "train_encoder", ENCODER_METRICS),
    ("train-decoder", "decoder", "decoder", "train_decoder", DECODER_METRICS)])
def test_init_from_takes_the_group_config_without_its_subjects(command, stage, module, name, metrics, monkeypatch,
                                                               tmp_path, capsys):
    run = _group_run(tmp_path, stage)
    seen = _fake_trainer(monkeypatch, module, name, metrics)
    argv = [command, "--config", str(run), "--init-from", str(run), "--subject", "5", "--out", str(tmp_path / "s5")]
    assert main(argv) == 0, capsys.readouterr().err
    cfg = seen["cfg"]
    assert cfg.data.subjects == [] and cfg.data.subject == 5 and cfg.train.init_from == str(run.resolve())
    assert cfg.data.resolution == 64                     # the group's settings are kept
    note = [line for line in capsys.readouterr().out.splitlines() if "data.subjects" in line]
    assert len(note) == 1 and "1,2,4" in note[0] and f"--config {run}" in note[0] and "subject 5" in note[0]
    assert main([*argv, "--subjects", "1,2"]) == 2       # typed subjects with --init-from: still refused
    assert "cannot be combined with data.subjects" in capsys.readouterr().err


def test_simulate_refuses_subject_with_subjects(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s"), "--subject", "2", "--subjects", "1,2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--subject 2 and --subjects 1,2" in err
    assert not (tmp_path / "s").exists()


def test_early_refusals_come_before_torch(tmp_path):
    """convert-god's subject range and evaluate's metric name: refused in one line with torch never imported."""
    (tmp_path / "run").mkdir()
    cases = [["convert-god", "--subject", "6", "--images", str(tmp_path / "none")],
             ["convert-god", "--subject", "0", "--images", str(tmp_path / "none")],
             ["evaluate", str(tmp_path / "run"), "--metric", "pixcor"]]
    script = ("import json, sys\nfrom brainrecon.cli import main\ncodes = [main(a) for a in json.loads(sys.argv[1])]\n"
              "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [2, 2, 2], "torch": False}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert "--subject 6: GOD has subjects 1..5" in errors[0] and "--subject '0'" in errors[1]
    assert "--metric 'pixcor' is unknown" in errors[2] and "pixcorr" in errors[2]


def test_resolution_mismatch_names_the_preset_that_fits(tmp_path):
    """Paper settings (112 px) on 64 px data: the message names the paper preset's size and --config demo, the preset
    made for 64 px; on data of a size no preset has, the --set fix alone."""
    from brainrecon.data import layout
    from brainrecon.data.release import load_stimuli
    from brainrecon.errors import DataError
    for side in (64,):
        layout.rgbd_file(tmp_path, side).write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_stimuli(tmp_path, "rgbd", 112)
    text = str(e.value)
    assert "configured for 112 px" in text and "the paper preset's size" in text
    assert "--config demo (the preset made for 64 px)" in text and "--set data.resolution=64" in text
    other = tmp_path / "other"
    other.mkdir()
    layout.stimuli_file(other, 48).write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_stimuli(other, "rgb", 64)
    text = str(e.value)
    assert "the demo preset's size" in text and "--config" not in text and "--set data.resolution=48" in text
    import numpy as np
    mislabelled = tmp_path / "mislabelled"
    mislabelled.mkdir()
    images = np.zeros((2, 64, 64, 3), np.uint8)
    np.savez(layout.stimuli_file(mislabelled, 112), train_images=images, test_images=images)
    with pytest.raises(DataError, match=r"holds 64 px images, not the 112 px its name says; write the file again, or "
                                        r"rename it images_64.npz"):
        load_stimuli(mislabelled, "rgb", 112)


def test_midas_and_alexnet_are_cited_alike_everywhere():
    """MiDaS with no other year than CITATION.cff's, in every file that cites it; AlexNet among the networks to
    cite."""
    cff_text = (ROOT / "CITATION.cff").read_text()
    year = re.search(r"MiDaS \(Ranftl et al\.\s+(\d{4})\)", cff_text).group(1)
    files = [ROOT / "README.md", ROOT / "CITATION.cff", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "brainrecon").rglob("*.py")]
    for path in files:
        for match in re.finditer(r"Ranftl et al\.?,?\s+([^)\"]{0,30})", path.read_text()):
            years = re.findall(r"\b(?:19|20)\d\d\b", match.group(1))
            assert set(years) <= {year}, (path, match.group(0))
    cff = yaml.safe_load(cff_text)
    assert "AlexNet (Krizhevsky et al. 2012)" in " ".join(cff["message"].split())
    assert any(r["title"] == "ImageNet Classification with Deep Convolutional Neural Networks" and r["year"] == 2012
               for r in cff["references"])
    assert "AlexNet (Krizhevsky et al. 2012" in " ".join((ROOT / "README.md").read_text().split())
