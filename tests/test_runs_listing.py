"""`brainrecon runs`: one row per run folder, read from config.yaml, metrics.json, metrics.jsonl and run.lock (never a
checkpoint), readable at 80 columns. The run folders are written here as small files."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from rich.console import Console

from brainrecon.cli import main
from brainrecon.cli.runs_command import print_runs
from brainrecon.config import load_config, to_yaml
from brainrecon.evaluation.run_listing import find_runs, list_runs


def make_run(folder: Path, stage: str, sets=(), config="demo,fast", metrics: dict | None = None,
             files=("best.pt", "last.pt"), epochs_logged: int = 0) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(to_yaml(load_config(stage, "rgbd", config, list(sets))))
    for name in files:
        (folder / name).write_bytes(b"a checkpoint the listing must not open")
    if metrics is not None:
        time.sleep(0.01)                                    # metrics.json is written after the last checkpoint
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if epochs_logged:
        (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": 1.0}) + "\n"
                                                      for e in range(epochs_logged)))
    return folder


def pairs(kept, total=1200):
    return {"requested": kept, "stimuli": kept, "of_stimuli": total}


@pytest.fixture
def runs_folder(tmp_path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "enc", "encoder", metrics={"median_r": 0.1234, "pairs": pairs(1200)})
    make_run(root / "study" / "g_enc", "encoder", ["data.subjects=[1,2,4]"],
             metrics={"median_r": 0.2, "summary": "mean", "subjects": {"1": {"pairs": pairs(150)},
                                                                       "2": {"pairs": pairs(150)}}})
    make_run(root / "study" / "s5_dec", "decoder", ["data.subject=5", "data.pairs=150",
                                                    f"train.init_from={root / 'study' / 'g_dec'}"],
             files=("last.pt",), epochs_logged=2)
    make_run(root / "ridge", "decoder", ["model.kind=ridge", "data.pairs=0.125"], files=("best.pt",),
             metrics={"test_pixcorr": 0.4567, "pairs": pairs(150)})
    make_run(root / "busy", "decoder", files=("last.pt",), epochs_logged=1)
    (root / "busy" / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    make_run(root / "killed", "encoder", files=("last.pt",), epochs_logged=3)
    (root / "killed" / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 7}))
    make_run(root / "new", "encoder", files=(), epochs_logged=0)
    (root / "new" / "metrics.jsonl").write_text("")
    (root / "not_a_run").mkdir()
    (root / "not_a_run" / "notes.txt").write_text("hello")
    make_run(root / "a" / "b" / "too_deep", "encoder", metrics={"median_r": 0.3})
    return root


def test_rows(runs_folder, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("the listing opened a checkpoint")
    monkeypatch.setattr(torch, "load", refuse)
    rows = {r.name: r for r in list_runs(runs_folder)}
    assert sorted(rows) == ["busy", "enc", "killed", "new", "ridge", "study/g_enc", "study/s5_dec"]
    enc = rows["enc"]
    assert (enc.stage, enc.modality, enc.subjects, enc.pairs, enc.state, enc.result) == (
        "encoder", "rgbd", "3", "all", "finished", "median r 0.123")
    group = rows["study/g_enc"]
    assert (group.subjects, group.pairs, group.state, group.result) == ("1,2,4", "150/1200", "finished",
                                                                        "median r 0.200")
    adapted = rows["study/s5_dec"]
    assert (adapted.stage, adapted.subjects, adapted.pairs, adapted.state) == ("decoder", "5<-g_dec", "150",
                                                                               "interrupted")
    epochs = load_config("decoder", "rgbd", "demo,fast").train.epochs
    assert adapted.result == f"epoch 2/{epochs}"
    ridge = rows["ridge"]
    assert (ridge.stage, ridge.pairs, ridge.state, ridge.result) == ("ridge", "150/1200", "finished", "pixcorr 0.457")
    assert rows["busy"].state == "running" and rows["busy"].result.startswith("epoch 1/")
    assert rows["killed"].state == "interrupted"                     # a lock left by a process that is gone
    assert (rows["new"].state, rows["new"].result) == ("no checkpoint", "-")


def test_resumed_and_stopped_again_is_interrupted(tmp_path):
    run = make_run(tmp_path / "r", "encoder", metrics={"median_r": 0.1})
    later = time.time() + 5
    os.utime(run / "last.pt", (later, later))                        # a checkpoint after the run's metrics.json
    (row,) = list_runs(tmp_path)
    assert row.state == "interrupted"


def test_a_run_folder_itself_and_the_search_depth(runs_folder):
    assert find_runs(runs_folder / "enc") == [runs_folder / "enc"]
    assert [r.name for r in list_runs(runs_folder / "enc")] == ["."]
    assert runs_folder / "a" / "b" / "too_deep" in find_runs(runs_folder, depth=3)
    assert runs_folder / "a" / "b" / "too_deep" not in find_runs(runs_folder)


def test_readable_at_80_columns(runs_folder):
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    rows = list_runs(runs_folder)
    print_runs(rows, runs_folder, console)
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    lines = text.splitlines()
    assert lines[0].split() == ["run", "stage", "mod.", "subject", "pairs", "state", "result"]
    for r in rows:                                                  # every row on one line, whole
        assert any(line.startswith(r.name) and r.state in line and r.result in line for line in lines), r


def test_cli(runs_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(runs_folder.parent)                           # the default DIR is ./runs
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "study/g_enc" in out and "7 run(s) in runs" in out
    assert main(["runs", str(tmp_path / "nope")]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["runs", str(tmp_path / "empty")]) == 0
    assert "no run folders" in capsys.readouterr().out
