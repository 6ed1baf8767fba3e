"""brainrecon export: a run's best network as a pickle-free folder in the Hugging Face Hub's layout, loaded back
(folder or hf://owner/name) to the same outputs; and the version that names the code (brainrecon/version.py)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import brainrecon
from brainrecon.api import decode_fmri
from brainrecon.cli import app, main
from brainrecon.config import load_config
from brainrecon.data import layout
from brainrecon.errors import UserError
from brainrecon.evaluation.identification import COLUMNS, EvalOptions, evaluate_runs, write_outputs
from brainrecon.models.decoder import DecoderArch
from brainrecon.models.subjects import SubjectDecoders
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.train.adapt import group_state
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder
from brainrecon.train.export import export_run, flatten, strip_paths, training_data
from brainrecon.train.exported import load_state, read_config, resolve_run
from brainrecon.train.model_card import card_text
from brainrecon.train.run_command import training_command
from brainrecon.version import git_commit, version_string
from tests.conftest import tiny_overrides

MACHINE_PATH = re.compile(r"(?<![\w.])(/home/|/Users/|/root/|/tmp/|/private/|/var/folders/|/work/|[A-Za-z]:\\)")
"""A path of the machine that trained or exported: home-like prefixes and temp folders."""


@pytest.fixture(scope="module")
def runs(tiny_subject, tmp_path_factory):
    """A tiny encoder, a self-supervised decoder on it (1 epoch) and a ridge decoder."""
    root = tmp_path_factory.mktemp("export_runs")
    enc, dec, ridge = root / "enc", root / "dec", root / "ridge"
    train_encoder(load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "model.input_size": 32, "train.milestones": "[]"})), tiny_subject, enc, quiet=True)
    train_decoder(load_config("decoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.milestones": "[]", "train.unpaired_image_batch": 8, "train.unpaired_fmri_batch": 8,
        "train.batch_size": 16, "loss.perceptual_net": "vgg16-random", "loss.perceptual_width": 0.125,
        "loss.perceptual_weights": "[10,10,10,10,2]"})), tiny_subject, dec, encoder_run=enc, quiet=True)
    train_decoder(load_config("decoder", "rgbd", "demo", tiny_overrides(**{"model.kind": "ridge"})), tiny_subject,
                  ridge, quiet=True)
    return {"encoder": enc, "decoder": dec, "ridge": ridge}


def test_exported_decoder_reconstructs_exactly_as_the_run(runs, tiny_subject, tmp_path):
    out = export_run(runs["decoder"], tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    with np.load(layout.subject_file(tiny_subject, 3)) as npz:
        voxels = torch.as_tensor(npz["arr_2"][:, npz["VC"]], dtype=torch.float32)
    ours, theirs = brainrecon.load_decoder(runs["decoder"], "cpu"), brainrecon.load_decoder(out, "cpu")
    with torch.no_grad():
        assert torch.equal(ours.model(voxels), theirs.model(voxels))
    assert theirs.config == ours.config                          # no machine path in this run's config
    a = load_reconstructions(reconstruct(runs["decoder"], data_dir=tiny_subject, device="cpu"))
    b = load_reconstructions(reconstruct(out, out=tmp_path / "recon", data_dir=tiny_subject, device="cpu"))
    assert np.array_equal(a["reconstructions"], b["reconstructions"]) and str(b["run"]) == "dec"
    assert "ceiling_reconstructions" not in b                    # the encoder does not travel with the decoder
    with pytest.raises(UserError, match="never written into; give --out"):
        reconstruct(out, data_dir=tiny_subject, device="cpu")
    np.save(tmp_path / "roi.npy", voxels.numpy())
    with pytest.raises(UserError, match="never written into; give --out"):
        decode_fmri(out, tmp_path / "roi.npy", device="cpu")
    decoded = np.load(decode_fmri(out, tmp_path / "roi.npy", out=tmp_path / "decoded", device="cpu"))
    assert np.array_equal(decoded["reconstructions"], a["reconstructions"]) and str(decoded["run"]) == "dec"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]


def test_export_holds_no_pickle_and_no_machine_path(runs, tiny_subject, tmp_path):
    out = export_run(runs["decoder"], tmp_path / "model")
    files = list(out.rglob("*"))
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")]
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    state = torch.load(runs["decoder"] / "best.pt", weights_only=True)
    assert sorted(keys) == sorted(state["model"])
    machine = [str(tiny_subject), str(runs["decoder"].parent), str(Path.home()), str(tmp_path)]
    for p in files:
        if p.suffix in (".json", ".md"):
            text = p.read_text()
            assert not [m for m in machine if m in text], p
            assert not MACHINE_PATH.search(text), (p, MACHINE_PATH.search(text))
    meta = read_config(out)
    assert "train.init_from" not in meta["paths_removed"] and meta["training"]["encoder_run"] == "enc"
    assert json.loads((out / "metrics.json").read_text())["unpaired_pool"]["root"] == "val"


def test_the_card_carries_the_hub_metadata_and_what_made_the_model(runs, tmp_path):
    out = export_run(runs["decoder"], tmp_path / "model")
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "mit" and front["library_name"] == "brainrecon"
    tags = {"fmri", "brain-decoding", "image-reconstruction", "depth-estimation", "simulated-data"}
    assert tags <= set(front["tags"])
    meta = read_config(out)
    assert (meta["kind"], meta["model_kind"], meta["modality"], meta["roi"], meta["resolution"]) == \
        ("decoder", "deep", "rgbd", "VC", 32)
    assert meta["n_voxels"] == meta["architecture"]["n_voxels"] and meta["training"]["data"]["source"] == "simulated"
    assert meta["exported_with"] == version_string() and meta["training"]["trained_with"] == version_string()
    assert "SIMULATED" in text and version_string() in text and "vgg16-random" in text and "`enc`" in text
    assert "huggingface-cli upload" in text and "test_pixcorr" in text and "| best epoch | 1 |" in text
    command = meta["training"]["command"]
    assert meta["training"]["command_exact"] and command in text
    assert command.startswith("brainrecon train-decoder --modality rgbd --subject 3 --encoder ENCODER_RUN --config "
                              "demo ") and "--set train.epochs=1" in command


def test_the_command_resolves_to_the_run_config(runs, tmp_path):
    """The card's command, typed (placeholders filled), gives the run's config: checked through `config show`."""
    meta = read_config(export_run(runs["decoder"], tmp_path / "model"))
    words = meta["training"]["command"].split()
    sets = [w.strip("'") for prev, w in zip(words, words[1:]) if prev == "--set"]
    shown = CliRunner().invoke(app, ["config", "show", "--stage", "decoder", "--modality", "rgbd", "--config", "demo",
                                     *[x for s in sets for x in ("--set", s)]])
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.output) == meta["run_config"]


def test_ridge_run_exports_its_factors_and_reloads(runs, tiny_subject, tmp_path):
    out = export_run(runs["ridge"], tmp_path / "ridge")
    meta = read_config(out)
    assert meta["model_kind"] == "ridge" and meta["architecture"]["rank"] > 0
    assert "--model ridge" in meta["training"]["command"] and "ENCODER_RUN" not in meta["training"]["command"]
    card = (out / "README.md").read_text()
    assert "| fit | closed form (ridge), no epochs |" in card and "best epoch" not in card
    a = load_reconstructions(reconstruct(runs["ridge"], data_dir=tiny_subject, device="cpu"))
    b = load_reconstructions(reconstruct(out, out=tmp_path / "recon", data_dir=tiny_subject, device="cpu"))
    assert np.array_equal(a["reconstructions"], b["reconstructions"])


def test_encoder_exports_and_predicts_the_same_voxels(runs, tiny_subject, tmp_path):
    out = export_run(runs["encoder"], tmp_path / "enc")
    from brainrecon.data.release import load_stimuli
    images = load_stimuli(tiny_subject, "rgbd", 32).test
    a = brainrecon.load_encoder(runs["encoder"], "cpu").predict(images)
    b = brainrecon.load_encoder(out, "cpu").predict(images)
    assert np.array_equal(a, b)
    assert "encoding-model" in (out / "README.md").read_text()
    with pytest.raises(UserError, match="an exported encoder, not a decoder"):
        brainrecon.load_decoder(out, "cpu")


def test_evaluation_rows_and_their_cis_go_into_the_card(runs, tiny_subject, tmp_path):
    rec = load_reconstructions(reconstruct(runs["decoder"], out=tmp_path / "r", data_dir=tiny_subject, device="cpu"))
    records, depth = evaluate_runs([rec], EvalOptions(ways=(2,), metrics=("pixcorr",), repeats=5))
    write_outputs(records, depth, tmp_path / "evaluation")
    out = export_run(runs["decoder"], tmp_path / "model", evaluation=tmp_path / "evaluation")
    text = (out / "README.md").read_text()
    first = records[0]
    assert f"{first['mean']:.3f} [{first['ci_low']:.3f}, {first['ci_high']:.3f}]" in text
    assert json.loads((out / "metrics.json").read_text())["evaluation"]["identification"]
    with pytest.raises(UserError, match="no rows for run 'ridge'"):
        export_run(runs["ridge"], tmp_path / "other", evaluation=tmp_path / "evaluation")


def test_shared_weights_are_stored_once_and_tied_back(tmp_path):
    """A multi-subject decoder's trunk is one set of tensors under every member's names."""
    torch.manual_seed(0)
    group = SubjectDecoders({1: DecoderArch(20, "rgb", 32, 4), 2: DecoderArch(30, "rgb", 32, 4)})
    tensors, tied = flatten(group.state_dict())
    assert tied and all(k.startswith("members.2.") and v.startswith("members.1.") for k, v in tied.items())
    from safetensors.torch import load_file, save_file
    save_file(tensors, str(tmp_path / "w.safetensors"))
    back = load_file(str(tmp_path / "w.safetensors"))
    back.update({alias: back[source] for alias, source in tied.items()})
    other = SubjectDecoders({1: DecoderArch(20, "rgb", 32, 4), 2: DecoderArch(30, "rgb", 32, 4)})
    other.load_state_dict(back)
    x = torch.randn(3, 30)
    with torch.no_grad():
        assert torch.equal(group(x, 2), other(x, 2))


def test_a_run_of_several_subjects_exports_every_member(tmp_path):
    from brainrecon.simulation.group import simulate_group
    from brainrecon.simulation.simulate import SimulationConfig
    data = tmp_path / "group"
    simulate_group(data, SimulationConfig(seed=0, n_voxels=60, n_unpaired=8, resolution=32, n_train=48, n_test=10,
                                          n_repeats=2, n_classes=2), [1, 2])
    cfg = load_config("decoder", "rgb", "demo", tiny_overrides(**{
        "data.subjects": "[1,2]", "train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 8,
        "train.milestones": "[]", "train.self_supervision": "false", "loss.perceptual_net": "none",
        "model.channels": 32}))
    train_decoder(cfg, data, tmp_path / "dec", quiet=True)
    out = export_run(tmp_path / "dec", tmp_path / "model")
    meta = read_config(out)
    assert sorted(meta["subjects"]) == ["1", "2"] and meta["tied"] and "--subjects 1,2" in meta["training"]["command"]
    assert "subjects 1, 2" in (out / "README.md").read_text()
    for s in (1, 2):
        a = load_reconstructions(reconstruct(tmp_path / "dec", data_dir=data, device="cpu", subject=s))
        b = load_reconstructions(reconstruct(out, out=tmp_path / f"r{s}", data_dir=data, device="cpu", subject=s))
        assert np.array_equal(a["reconstructions"], b["reconstructions"]) and str(b["run"]) == f"dec subject {s}"
    with pytest.raises(UserError, match="pass --subject N"):
        brainrecon.load_decoder(out, "cpu")
    with pytest.raises(UserError, match="exported from .* --init-from GROUP_RUN`$"):
        brainrecon.load_decoder(out, "cpu", subject=5)              # not `--init-from <the exported folder>`
    with pytest.raises(UserError, match="an exported model .* give the train-decoder run folder"):
        group_state(out, "decoder")
    record = training_data(str(data), 1, {1: 60, 2: 60})
    assert record["source"] == "simulated" and sorted(record["subjects"]) == ["1", "2"]


def test_strip_paths_keeps_names_and_says_where():
    removed = []
    clean = strip_paths({"train": {"init_from": "/home/me/runs/group", "lr": 1e-3}, "data": {"roi": "VC",
                         "exclude_classes": "C:\\lists\\classes.txt"}, "x": ["~/a/b", "rel/path"]}, "", removed)
    assert clean == {"train": {"init_from": "group", "lr": 1e-3}, "data": {"roi": "VC", "exclude_classes":
                     "classes.txt"}, "x": ["b", "rel/path"]}
    assert removed == ["train.init_from", "data.exclude_classes", "x"]


def test_hub_id_downloads_through_huggingface_hub(runs, tiny_subject, tmp_path, monkeypatch):
    import huggingface_hub
    out = export_run(runs["decoder"], tmp_path / "model")
    asked = []

    def fake_download(repo_id, **kwargs):
        asked.append((repo_id, kwargs.get("revision")))
        return str(out)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    decoder = brainrecon.load_decoder("hf://owner/name@v1", "cpu")
    assert asked == [("owner/name", "v1")]
    assert decoder.run == out
    result = CliRunner().invoke(app, ["reconstruct", "hf://owner/name", "--data-dir", str(tiny_subject),
                                      "--device", "cpu"])
    assert result.exit_code == 2 and "give --out" in result.output and len(result.output.strip().splitlines()) == 1
    np.save(tmp_path / "roi.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(UserError, match="give --out"):
        decode_fmri("hf://owner/name", tmp_path / "roi.npy", device="cpu")
    assert len(asked) == 1                                           # refused before anything was downloaded
    result = CliRunner().invoke(app, ["reconstruct", "hf://owner/name", "--data-dir", str(tiny_subject),
                                      "--device", "cpu", "--out", str(tmp_path / "recon")])
    assert result.exit_code == 0, result.output
    a = load_reconstructions(reconstruct(runs["decoder"], out=tmp_path / "mine", data_dir=tiny_subject, device="cpu"))
    assert np.array_equal(a["reconstructions"], load_reconstructions(tmp_path / "recon")["reconstructions"])
    with pytest.raises(UserError, match="not a Hub id"):
        brainrecon.load_decoder("hf://just-a-name", "cpu")


def test_hub_id_without_network_is_one_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    code = main(["reconstruct", "hf://owner/name", "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "hf://owner/name: the Hugging Face Hub cannot be reached" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_export_refuses_what_it_cannot_export(runs, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    for args, says in ((["export", str(runs["decoder"]), str(tmp_path / "busy")], "holds other files"),
                       (["export", str(tmp_path), str(tmp_path / "o")], "no best.pt here")):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and says in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    export_run(runs["decoder"], tmp_path / "again")
    export_run(runs["decoder"], tmp_path / "again")                 # an earlier export is replaced
    with pytest.raises(UserError, match="already an exported model"):
        export_run(tmp_path / "again", tmp_path / "third")
    assert load_state(tmp_path / "again", "decoder")["kind"] == "decoder"


def test_version_names_the_git_commit(runs, monkeypatch):
    commit = git_commit()
    result = CliRunner().invoke(app, ["-V"])
    assert result.exit_code == 0 and result.output.splitlines()[0] == f"brainrecon {version_string()}"
    assert version_string().startswith(brainrecon.__version__)
    head = subprocess.run(["git", "-C", str(Path(brainrecon.__file__).parents[1]), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:                    # this checkout: the commit is named
        assert commit is not None and commit[0] == head.stdout.strip()
        assert f"(git {commit[0]}" in result.output
    metrics = json.loads((runs["decoder"] / "metrics.json").read_text())
    assert metrics["brainrecon_version"] == version_string()


def test_version_without_git_or_outside_a_checkout_is_the_number(tmp_path, monkeypatch):
    import brainrecon.version as version
    assert git_commit(tmp_path) is None                         # not a checkout

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(version.subprocess, "run", no_git)
    version.version_string.cache_clear()
    try:
        assert version.git_commit() is None and version.version_string() == version.__version__ == "0.2.0"
    finally:
        version.version_string.cache_clear()


def test_no_path_inside_a_metric_or_an_evaluation_value_reaches_the_export(runs, tmp_path, monkeypatch):
    """A message naming a cached file (nsd_suite.csv's `unavailable`, a metrics.json string) loses its folders; the
    keys are listed (metrics.json's as metrics:KEY); only this run's rows, and the columns the card shows, go in."""
    run = tmp_path / "copy" / "dec"
    shutil.copytree(runs["decoder"], run)
    secret = "/home/someone/.cache/brainrecon"
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["summary"] = f"perceptual net loaded from {secret}/vgg16.pt (cached)"
    (run / "metrics.json").write_text(json.dumps(metrics))
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()

    def write(name, fields, runs_, **values):
        with open(evaluation / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows([{**{c: "1" for c in fields}, **values, "run": r} for r in runs_])
    mine = ["dec", "dec subject 2", "dec D(E(x))", "dec subject 2 D(E(x))"]
    write("identification.csv", [*COLUMNS, "source"], mine + ["dec (a)", "dec (b) D(E(x))", "decx"],
          source=f"{secret}/recon/reconstructions.npz")
    write("nsd_suite.csv", ["run", "subject", "metric", "mean", "better", "n_images", "source", "unavailable"],
          ["dec", "dec (a)"], mean="", unavailable=f"no weights at C:\\Users\\someone\\cache\\clip.pt or {secret}/x")
    monkeypatch.chdir(run)
    out = export_run(".", tmp_path / "model", evaluation=evaluation)          # `brainrecon export . OUT`
    meta = read_config(out)
    assert meta["name"] == "dec" and "metrics:summary" in meta["paths_removed"]
    exported = json.loads((out / "metrics.json").read_text())
    assert exported["summary"] == "perceptual net loaded from vgg16.pt (cached)"
    rows = exported["evaluation"]
    assert [r["run"] for r in rows["identification"]] == mine and [r["run"] for r in rows["nsd_suite"]] == ["dec"]
    assert set(rows["nsd_suite"][0]) == {"run", "metric", "mean", "better", "n_images"}
    assert "| dec | 1 | unavailable |" in (out / "README.md").read_text()
    for p in out.iterdir():
        if p.suffix in (".json", ".md"):
            text = p.read_text()
            assert "someone" not in text and ".cache" not in text, p


def test_an_nsd_group_records_each_members_data_and_its_terms(runs, tmp_path):
    """An NSD group's subjects sit in folders of their own, each with its convert.json: the export reads each one's
    (not data.subject's, which a group does not use), and the card carries the NSD and COCO terms."""
    root = tmp_path / "nsd"
    for s in (1, 2):
        folder = root / f"nsd_subj{s:02d}"
        folder.mkdir(parents=True)
        (folder / f"sbj_{s}.npz").write_bytes(b"")
        (folder / "convert.json").write_text(json.dumps({"sessions": [1, 2], "normalisation": "betas / 300, z"}))
    record = training_data(str(root), 7, {1: 10, 2: 12})
    assert record["source"] == "nsd" and record["normalisation"] == "betas / 300, z"
    assert {s: m["converted_by"] for s, m in record["subjects"].items()} == {"1": "brainrecon convert-nsd",
                                                                            "2": "brainrecon convert-nsd"}
    meta = read_config(export_run(runs["decoder"], tmp_path / "model"))
    text = card_text({**meta, "training": {**meta["training"], "data": record}}, {})
    assert "Natural Scenes Dataset" in text and "COCO" in text and "- nsd" in text and "SIMULATED" not in text
    mixed = training_data(str(root), 7, {1: 10, 3: 12})                       # subject 3 is nowhere
    assert mixed["source"] == "mixed" and mixed["subjects"]["3"]["source"] == "unknown"


def test_hub_id_the_hub_refuses_is_one_line(tmp_path, capsys):
    """hf://me/model--v2 passes brainrecon's pattern but not huggingface_hub's validation (offline)."""
    with pytest.raises(UserError, match=r"hf://me/model--v2: not a Hub id \(.*--.*\); write hf://owner/name"):
        resolve_run("hf://me/model--v2")
    code = main(["reconstruct", "hf://me/model--v2", "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not a Hub id" in err and "Traceback" not in err, err


def test_an_adapted_run_command_names_its_group_run_whatever_the_path():
    cfg = load_config("decoder", "rgb", "demo", ["train.init_from=runs/group"], {"data": {"subject": 4}})
    from brainrecon.config import to_dict
    assert "--init-from GROUP_RUN" in training_command("decoder", to_dict(cfg), set(), False).text
