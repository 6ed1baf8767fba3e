"""Bad option values: one line naming the flag as typed (and its choices), exit 2, before torch is imported; a
failing command makes no folder; --help shows flags as flags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from brainrecon.cli import main

CASES = [
    (["train-decoder", "--model", "foo"], "--model 'foo'", "deep, ridge"),
    (["train-encoder", "--device", "tpu"], "--device 'tpu'", "auto, cpu, cuda, mps"),
    (["train-encoder", "--modality", "foo"], "--modality 'foo'", "rgb, depth, rgbd"),
    (["train-decoder", "--roi", "V9"], "--roi 'V9'", "V1"),
    (["train-encoder", "--epochs", "abc"], "--epochs 'abc'", "integer"),
    (["demo", "--nosuch"], "--nosuch", ""),
]


@pytest.mark.parametrize("argv,flag,choices", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_is_one_line_naming_the_flag(argv, flag, choices, capsys, monkeypatch):
    before = set(sys.modules)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and choices in err and err.startswith("error:"), err
    assert len(err.strip().splitlines()) == 1, err
    if "torch" not in before:
        assert "torch" not in sys.modules                               # refused before torch was imported


def test_bad_value_from_the_shell_is_fast_and_one_line():
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


def test_help_shows_flags_as_flags_and_every_option_has_help(capsys):
    import click
    import typer
    from brainrecon.cli import app
    assert main(["train-encoder", "--help"]) == 0
    text = capsys.readouterr().out
    assert "<bool>" not in text and "list[" not in text
    assert main(["evaluate", "--help"]) == 0
    assert "brainrecon[nsd]" in " ".join(capsys.readouterr().out.replace("│", " ").split())
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        subs = command.commands.values() if isinstance(command, click.Group) else [command]
        for sub in subs:
            for param in sub.params:
                if isinstance(param, click.Option) and param.name != "help":
                    assert param.help, f"{name} {param.opts[0]} has no help line"
