"""Bad option values and wrong paths: one line naming the flag or file as typed (and the fix), exit 2, before torch is
imported; a failing command makes no folder; --help shows flags as flags and loses no word at 80 columns."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.text import Text

from brainrecon.cli import app, main

# (argv, what the one line must say). {tmp} is a folder holding some.txt (a text file) and rundir/ (an empty folder).
CASES = [
    (["train-decoder", "--model", "foo"], ["--model 'foo'", "deep, ridge"]),
    (["train-encoder", "--device", "tpu"], ["--device 'tpu'", "auto, cpu, cuda, mps"]),
    (["train-encoder", "--modality", "foo"], ["--modality 'foo'", "rgb, depth, rgbd"]),
    (["train-decoder", "--roi", "V9"], ["--roi 'V9'", "V1"]),
    (["train-encoder", "--epochs", "abc"], ["--epochs 'abc'", "integer"]),
    (["train-encoder", "--epochs", "0"], ["--epochs 0", "at least 1"]),
    (["train-encoder", "--epochs", "-3"], ["--epochs -3", "at least 1"]),
    (["train-encoder", "--epochs", "3", "--set", "train.epochs=4"], ["--epochs 3", "--set train.epochs=4"]),
    (["train-encoder", "--subject", "x"], ["--subject 'x'", "integer"]),
    (["demo", "--nosuch"], ["--nosuch"]),
    (["demo", "--seed", "x"], ["--seed 'x'", "integer"]),
    (["demo", "--device", "tpu"], ["--device 'tpu'"]),
    (["config", "show", "--stage", "decoder", "--set", "loss.weights=[1,1"], ["--set loss.weights=[1,1", "YAML"]),
    (["config", "show", "--stage", "decoder", "--config", "{tmp}/rundir"], ["--config", "config.yaml"]),
    (["reconstruct", "{tmp}/nope"], ["nope: no such folder", "train-decoder --out"]),
    (["reconstruct", "{tmp}/some.txt"], ["some.txt is a file, not a run folder"]),
    (["reconstruct", "{tmp}/rundir", "--data-dir", "{tmp}/nodir"], ["--data-dir", "nodir: folder does not exist"]),
    (["evaluate", "{tmp}/some.txt"], ["some.txt: not a reconstructions .npz file"]),
    (["evaluate", "{tmp}/nope"], ["nope: no such file or folder"]),
    (["evaluate", "{tmp}/rundir", "--distractors", "nodir"], ["--distractors nodir: no such folder"]),
    (["evaluate", "{tmp}/rundir", "--exhaustive", "--ways", "5"], ["--exhaustive", "--ways 5"]),
    (["evaluate", "{tmp}/rundir", "--repeats", "0"], ["--repeats '0'", "at least 1"]),
    (["evaluate"], ["Missing argument", "RECONS"]),
    (["simulate", "--out", "{tmp}/s", "--n-unpaired", "-1"], ["--n-unpaired '-1'", "at least 1"]),
    (["simulate", "--out", "{tmp}/s", "--luminance-share", "1.5"], ["--luminance-share '1.5'", "[0, 1)"]),
    (["classify", "{tmp}/rundir", "--class-images", "{tmp}/nodir"], ["--class-images", "no such folder"]),
    (["classify", "{tmp}/rundir", "--class-images", "{tmp}/rundir", "--data-dir", "{tmp}/nodir"],
     ["--data-dir", "folder does not exist"]),
    (["convert-nsd", "--subject", "1", "--data-dir", "{tmp}/rundir"], ["NSD folder not found", "--nsd-dir"]),
    (["convert-nsd", "--subject", "9"], ["--subject 9", "subjects 1..8"]),
]


def _argv(argv: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in argv]


@pytest.fixture
def places(tmp_path) -> Path:
    (tmp_path / "some.txt").write_text("not a run\n")
    (tmp_path / "rundir").mkdir()
    return tmp_path


@pytest.mark.parametrize("argv,says", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_naming_the_flag_or_file(argv, says, places, capsys):
    before = {p for p in places.rglob("*")}
    assert main(_argv(argv, places)) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err       # no blank line above it
    for text in says:
        assert text in err, (text, err)
    assert "Traceback" not in err and not captured.out
    assert {p for p in places.rglob("*")} == before                                 # nothing made


def test_bad_inputs_are_refused_before_torch_is_imported(places):
    """Every case above, in a fresh interpreter: refused with exit 2 and torch never imported (so within about a
    second: the checks come before the heavy imports)."""
    script = ("import json, sys\nfrom brainrecon.cli import main\ncodes = [main(a) for a in json.loads(sys.argv[1])]\n"
              "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))")
    cases = [_argv(argv, places) for argv, _ in CASES]
    result = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [2] * len(cases)
    assert not report["torch"], "a bad input was checked only after torch was imported"


def test_bad_value_from_the_shell_is_one_line():
    result = subprocess.run([sys.executable, "-m", "brainrecon", "train-encoder", "--epochs", "abc"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "╭" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_data_dir_says_it_does_not_exist(tmp_path, capsys):
    assert main(["train-encoder", "--data-dir", str(tmp_path / "typo"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "folder does not exist" in err and not (tmp_path / "typo").exists() and not (tmp_path / "r").exists()


def test_failed_fetch_and_convert_make_no_folder(tmp_path, capsys):
    assert main(["fetch-data", "--data-dir", str(tmp_path / "d1"), "--only", "nosuch"]) == 2
    assert main(["convert-nsd", "--subject", "9", "--data-dir", str(tmp_path / "d2")]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "subjects 1..8" in err
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()


def test_a_training_run_that_fails_leaves_no_new_folder(tmp_path, capsys):
    """The trainer takes its run lock (which makes --out and its parents) and then finds no data: runs/ is gone."""
    data = tmp_path / "empty-data"
    data.mkdir()
    out = tmp_path / "runs" / "a" / "enc"
    assert main(["train-encoder", "--data-dir", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-data"]


def test_version_names_brainrecon_torch_cuda_and_the_device(capsys):
    import torch

    from brainrecon import __version__
    for flag in ("-V", "--version"):
        assert main([flag]) == 0
        out = capsys.readouterr().out
        assert f"brainrecon {__version__}" in out and f"torch {torch.__version__}" in out
        assert ("CUDA" in out) and "device (--device auto): " in out


def test_demo_passes_seed_and_device_to_the_run(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run_demo(out, modality, budget, **kwargs):
        seen.update(kwargs, out=out, budget=budget)
        raise KeyboardInterrupt
    monkeypatch.setattr("brainrecon.demo.run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path / "d"), "--seed", "2", "--device", "cpu", "--full"]) == 130
    assert seen["seed"] == 2 and seen["device"] == "cpu" and seen["budget"] == "full"


# ---------------------------------------------------------------------------------------------------------------
# --help


def _commands():
    """(name, click command) for every subcommand, `config show` included."""
    import typer
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            for sub_name, sub in command.commands.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


def _words(text: str, markup: bool = True) -> list[str]:
    """The words of a help text as shown: typer reads help as rich markup (`\\[` shows `[`)."""
    return (Text.from_markup(text).plain if markup else text).replace("│", " ").split()


def test_every_option_has_help_and_flags_show_no_type(capsys):
    for name, command in _commands():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} {param.opts[0]} has no help line"
    assert main(["train-encoder", "--help"]) == 0
    text = capsys.readouterr().out
    assert "<bool>" not in text and "list[" not in text and "--out" in text
    assert main(["evaluate", "--help"]) == 0
    assert "brainrecon[nsd]" in " ".join(capsys.readouterr().out.replace("│", " ").split())


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_help_at_80_columns_loses_no_word(name, monkeypatch, capsys):
    """Every word of the command's summary, of every option's and argument's help, and of its example appears in
    `--help` rendered 80 columns wide (nothing cut with an ellipsis, no word broken across lines); metavars are
    words (no `{run}`-style placeholder of a parameter name)."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    command = dict(_commands())[name]
    assert main([*name.split(), "--help"]) == 0
    rendered = capsys.readouterr().out
    assert max(len(line) for line in rendered.splitlines()) <= 80
    expected = Counter()
    for param in command.params:
        if param.name != "help" and getattr(param, "help", None):
            expected.update(_words(param.help))
    expected.update(_words((command.help or "").split("\n\n")[0]))
    expected.update(_words(command.epilog or ""))
    shown = Counter(_words(rendered, markup=False))
    missing = expected - shown
    assert not missing, f"{name} --help at 80 columns lost {sorted(missing)}"
    assert "Example: brainrecon" in rendered
    usage = next(line for line in rendered.splitlines() if "Usage:" in line)
    assert not re.search(r"\{[a-z_]+\}", usage), usage
