"""docs/subjects.md's command blocks, verbatim: the simulated group and the new subject adapted from it; and the NSD
block, on a generated mini NSD tree of four subjects with mostly different images
and the shared test images: convert-nsd x4 -> a group of three -> a fourth subject adapted from few pairs ->
reconstruct and evaluate --suite nsd per subject. The walk adds only epochs and sizes (tests/test_walk_god.py's
rules), and reaches the data folder through BRAINRECON_DATA."""

from __future__ import annotations

import json
import shlex

import pytest

from brainrecon.simulation.rehearsal import RehearsalConfig, make_world
from tests.nsd_writer import write_mini_nsd
from tests.test_walk_god import ROOT, code_block, run, section

pytestmark = pytest.mark.slow


def test_docs_nsd_group_block(tmp_path, monkeypatch):
    world = make_world(tmp_path / "world", RehearsalConfig(subjects=(3,), n_train=16, n_voxels=100, repeats=2),
                       torch_home=tmp_path / "world" / "torch_home")
    data = tmp_path / "data"
    write_mini_nsd(data / "nsd", sessions=3, per_session=60, others=(2, 5, 7))
    monkeypatch.setenv("BRAINRECON_DATA", str(data))
    monkeypatch.setenv("TORCH_HOME", str(world.torch_home))
    monkeypatch.chdir(tmp_path)
    cmds = code_block(section(ROOT / "docs" / "subjects.md", "## NSD: subjects who saw different images"))
    assert [shlex.split(c)[1] for c in cmds].count("convert-nsd") == 4
    for c in cmds:
        args = shlex.split(c)
        if args[1] == "convert-nsd":
            args[args.index("--unpaired") + 1] = "40"                    # sizes
            c = shlex.join(args) + " --resolution 32"
        elif args[1] in ("train-encoder", "train-decoder"):
            if "--pairs" in args:
                args[args.index("--pairs") + 1] = "30"                   # the mini tree has 100 training images
            c = shlex.join(args) + " --set data.resolution=32"
        elif args[1] == "evaluate":
            c += " --no-download"                                        # tests never reach the network
        run(c, tmp_path, data)
    group = json.loads((tmp_path / "runs/nsd_g_dec/metrics.json").read_text())
    assert set(group["subjects"]) == {"1", "2", "5"} and "NSD" in group["stimuli"]["rule"]
    assert group["stimuli"]["common_test_stimuli"] > 0 and group["stimuli"]["common_training_stimuli"] < 100
    adapted = json.loads((tmp_path / "runs/nsd7_dec/metrics.json").read_text())
    assert adapted["init_from"]["rule"] == "group encoder" and adapted["pairs"]["stimuli"] == 30
    for out in ("runs/nsd_g_eval2", "runs/nsd7_eval"):
        assert (tmp_path / out / "nsd_suite.csv").exists()


def test_docs_group_blocks(tmp_path, monkeypatch):
    """The "Several subjects" and "A new subject from few pairs" blocks on a small simulated group (sizes and steps
    added), from simulate to evaluate."""
    monkeypatch.setenv("BRAINRECON_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    doc = ROOT / "docs" / "subjects.md"
    cmds = (code_block(section(doc, "## Several subjects: `--subjects`"))
            + code_block(section(doc, "## A new subject from few pairs: `--init-from`")))
    names = [shlex.split(c)[1] for c in cmds]
    assert names[0] == "simulate" and names.count("train-encoder") == 2 and "evaluate" in names
    sizes = {"--n-voxels": "150", "--n-unpaired": "32", "--resolution": "32"}
    for c in cmds:
        args = shlex.split(c)
        for flag, value in sizes.items():
            if flag in args:
                args[args.index(flag) + 1] = value
        if args[1] in ("train-encoder", "train-decoder"):
            args += ["--set", "data.resolution=32", "--set", "train.steps_per_epoch=2"]
        run(shlex.join(args), tmp_path, tmp_path / "data")
    adapted = json.loads((tmp_path / "runs/s5_dec/metrics.json").read_text())
    assert adapted["init_from"]["rule"] == "group fMRI" and adapted["pairs"]["stimuli"] == 150
    assert (tmp_path / "runs/g_dec/reconstruct_test_subject2").is_dir()
    assert (tmp_path / "runs/s5_eval").is_dir()
