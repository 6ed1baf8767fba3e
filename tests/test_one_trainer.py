"""One trainer per stage: a single-subject run is a group of one (bit for bit the run of the trainers before they were
merged, tests/data/guard), groups of subjects who saw different images (NSD-like folders), the pairing of kept rows,
the content check of a shared stimulus set, and a new subject adapted from a group that never saw its images."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainrecon.data import layout, release
from brainrecon.data.group import load_members
from brainrecon.errors import DataError
from brainrecon.models.decoder import Decoder
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.simulation.group import simulate_group
from brainrecon.train import checkpoint
from brainrecon.train.adapt import adapt_decoder, adapt_encoder
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import build_encoder, train_encoder

GUARD = Path(__file__).resolve().parent / "data" / "guard"
sys.path.insert(0, str(GUARD))
from guard_setup import GUARD_SIM, dec_cfg, enc_cfg  # noqa: E402
from make_guard import summary  # noqa: E402


def test_a_group_of_one_is_the_single_subject_run_of_before(tmp_path):
    """Same seed, same config: the weights of the run written by the trainers before they became one per stage."""
    ref = json.loads((GUARD / "guard.json").read_text())
    root, runs = tmp_path / "data", tmp_path / "runs"
    simulate_group(root, GUARD_SIM, [1, 2])
    train_encoder(enc_cfg(), root, runs / "enc", quiet=True)
    train_decoder(dec_cfg(), root, runs / "dec", encoder_run=runs / "enc", quiet=True)
    # Bit for bit (one thread, fp32) where torch and its CPU kernels are those that wrote guard.json. Elsewhere the
    # kernels round differently, and a few Adam steps turn rounding into lr-sized moves of the biases a GroupNorm
    # removes (their gradient is rounding noise): those are left out and the rest compared loosely.
    same_kernels = (ref["torch"], ref["cpu_capability"]) == (torch.__version__, torch.backends.cpu.get_cpu_capability())
    for kind, run in (("encoder", "enc"), ("decoder", "dec")):
        got = summary(checkpoint.load(runs / run / checkpoint.LAST)["model"])
        assert got.keys() == ref[kind].keys(), kind                    # the single-subject checkpoint format
        for k, r in ref[kind].items():
            if same_kernels:
                assert got[k]["sha256"] == r["sha256"], (kind, k)
            elif not ("blocks." in k and k.endswith(".2.bias")):
                assert abs(got[k]["sum"] - r["sum"]) <= 0.05 * r["abs_sum"] + 1e-6, (kind, k)
    assert (runs / "dec" / "pairs.json").exists() and not list((runs / "dec").glob("pairs_subject*"))
    metrics = json.loads((runs / "dec" / "metrics.json").read_text())
    assert metrics["subject"] == 1 and set(metrics["subjects"]) == {"1"}


def nsd_like(root: Path, subject: int, seed: int, train_ids: np.ndarray, test_ids: np.ndarray) -> Path:
    """A simulated subject in its own folder (images of its own, drawn by `seed`), its stimulus file carrying NSD
    73k ids as convert-nsd writes them. (The ids are labels for the bookkeeping under test; the pixels are the
    simulation's, so the same id does not show the same picture across these folders.)"""
    folder = root / f"nsd_subj{subject:02d}"
    simulate_group(folder, GUARD_SIM.__class__(**{**GUARD_SIM.__dict__, "seed": seed}), [subject])
    path = layout.stimuli_file(folder, GUARD_SIM.resolution)
    with np.load(path) as z:
        arrays = dict(z)
    np.savez(path, **arrays, train_nsd_ids=train_ids, test_nsd_ids=test_ids)
    return folder


@pytest.fixture(scope="module")
def nsd_group(tmp_path_factory):
    """Subjects 1 and 2 (different images and voxel counts, 5 of 10 test ids in common) and 3 (images of its own)."""
    root = tmp_path_factory.mktemp("nsd_group")
    n, t = GUARD_SIM.n_train, GUARD_SIM.n_test
    nsd_like(root, 1, 0, np.arange(1000, 1000 + n), np.arange(10, 10 + t))
    nsd_like(root, 2, 1, np.arange(2000, 2000 + n), np.arange(15, 15 + t))
    nsd_like(root, 3, 2, np.arange(3000, 3000 + n), np.arange(10, 10 + t))
    return root


@pytest.fixture(scope="module")
def nsd_runs(nsd_group, tmp_path_factory):
    out = tmp_path_factory.mktemp("nsd_runs")
    group = {"data.subjects": "[1,2]"}
    train_encoder(enc_cfg(**group), nsd_group, out / "enc", quiet=True)
    train_decoder(dec_cfg(**group), nsd_group, out / "dec", encoder_run=out / "enc", quiet=True)
    return out


def test_a_group_of_subjects_who_saw_different_images(nsd_group, nsd_runs):
    metrics = json.loads((nsd_runs / "dec" / "metrics.json").read_text())
    stimuli = metrics["stimuli"]
    assert "NSD" in stimuli["rule"] and stimuli["common_test_stimuli"] == 5 and stimuli["common_training_stimuli"] == 0
    assert set(metrics["subjects"]) == {"1", "2"}
    assert metrics["subjects"]["1"]["n_voxels"] != metrics["subjects"]["2"]["n_voxels"]
    for s, first_id in ((1, 1000), (2, 2000)):
        listing = json.loads((nsd_runs / "dec" / f"pairs_subject{s}.json").read_text())
        assert listing["kept_ids"][0] >= first_id and len(listing["kept_ids"]) == GUARD_SIM.n_train
        assert (nsd_runs / "enc" / f"pairs_subject{s}.json").exists()
        rec = load_reconstructions(reconstruct(nsd_runs / "dec", "test", data_dir=nsd_group, subject=s))
        assert int(rec["subject"]) == s and rec["reconstructions"].shape[0] == GUARD_SIM.n_test
    assert not (nsd_runs / "dec" / "pairs.json").exists()


@pytest.mark.slow
def test_a_group_of_different_images_resumes_to_the_same_weights(nsd_group, nsd_runs, tmp_path):
    sets = {"data.subjects": "[1,2]"}
    train_decoder(dec_cfg(**sets), nsd_group, tmp_path / "straight", encoder_run=nsd_runs / "enc", quiet=True)
    train_decoder(dec_cfg(**sets, **{"train.epochs": 1}), nsd_group, tmp_path / "resumed",
                  encoder_run=nsd_runs / "enc", quiet=True)
    train_decoder(dec_cfg(**sets), nsd_group, tmp_path / "resumed", encoder_run=nsd_runs / "enc", resume=True,
                  quiet=True)
    a = checkpoint.load(tmp_path / "straight" / checkpoint.LAST)["model"]
    b = checkpoint.load(tmp_path / "resumed" / checkpoint.LAST)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("pairs", [0, 20])
def test_every_kept_row_is_the_response_to_its_image(nsd_group, pairs):
    """Under --pairs each kept fMRI row is matched, in the subject file, to the row that holds it, and that row's
    label names the very image it is trained with: a subset of the images without the fMRI (or the reverse) fails."""
    cfg = enc_cfg(**{"data.subjects": "[1,2]", "data.pairs": pairs, "data.val_fraction": 0.2})
    members = load_members(nsd_group, cfg.data, cfg.modality, seed=cfg.train.seed)
    for s, data in members.data.items():
        folder = members.roots[s]
        with np.load(layout.subject_file(folder, s)) as z:
            raw, labels, mask = z["arr_0"], z["arr_3"], z[cfg.data.roi].astype(bool)
        images = release.load_stimuli(folder, "rgbd", GUARD_SIM.resolution).train
        raw = raw[:, mask]
        for fmri, image in ((data.train_fmri, data.train_images), (data.val_fmri, data.val_images)):
            for row, shown in zip(fmri.numpy(), image.numpy()):
                source = np.flatnonzero((raw == row).all(1))
                assert len(source) == 1
                assert np.array_equal(images[labels[source[0]]], shown.transpose(1, 2, 0))
        if pairs:
            assert len(np.unique(data.train_stimuli)) + len(data.val_images) <= pairs


def test_a_shared_stimulus_set_is_checked_by_content(tmp_path):
    """Two folders without source ids must hold the same images: same count, same names, other pixels: refused."""
    root = tmp_path / "data"
    simulate_group(root / "a", GUARD_SIM, [1])
    simulate_group(root / "b", GUARD_SIM, [2])
    for name in (layout.rgbd_file(root / "b", 32), layout.stimuli_file(root / "b", 32)):
        with np.load(name) as z:
            arrays = dict(z)
        arrays["train_images"] = arrays["train_images"][::-1].copy()          # the same pictures, another order
        np.savez(name, **arrays)
    cfg = enc_cfg(**{"data.subjects": "[1,2]"})
    with pytest.raises(DataError, match="differ in content") as e:
        load_members(root, cfg.data, cfg.modality)
    assert "\n" not in str(e.value)
    shutil.rmtree(root / "b")
    shutil.copytree(root / "a", root / "b")
    (root / "b" / "sbj_1.npz").rename(root / "b" / "sbj_2.npz")
    assert load_members(root, cfg.data, cfg.modality).shared_stimuli


def test_a_new_subject_the_group_never_saw_is_adapted(nsd_group, nsd_runs, tmp_path):
    cfg = enc_cfg(**{"data.subject": 3, "data.pairs": 20, "train.init_from": str(nsd_runs / "enc")})
    folder = nsd_group / "nsd_subj03"
    members = load_members(folder, cfg.data, cfg.modality, seed=0)
    data = members.data[3]
    torch.manual_seed(0)
    fresh = build_encoder(cfg, data.n_voxels, folder)
    torch.manual_seed(0)
    adapted = build_encoder(cfg, data.n_voxels, folder)
    record = adapt_encoder(adapted, nsd_runs / "enc", cfg, data)
    group = checkpoint.load_group_encoder(nsd_runs / "enc")
    shared = group.members["1"]
    for mine, theirs in ((adapted.backbone, shared.backbone), (adapted.heads, shared.heads)):
        for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), k                                       # the group's at step 0
    assert not torch.equal(adapted.branch_mix, fresh.branch_mix)            # its own layers: not the random start
    assert not torch.equal(adapted.space_maps["6"].weight, fresh.space_maps["6"].weight)
    assert record["median_match_r"] > record["median_match_r_null"]
    dcfg = dec_cfg(**{"data.subject": 3, "data.pairs": 20, "train.init_from": str(nsd_runs / "dec")})
    torch.manual_seed(0)
    dec = Decoder(checkpoint.decoder_arch(dcfg, data.n_voxels))
    fresh_fc = dec.input_fc.weight.clone()
    drec = adapt_decoder(dec, nsd_runs / "dec", dcfg, data, folder)
    assert drec["rule"] == "group encoder"
    group_dec = checkpoint.load_group_decoder(nsd_runs / "dec").members["1"]
    for mine, theirs in ((dec.blocks, group_dec.blocks), (dec.top, group_dec.top)):
        for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), k
    assert not torch.equal(dec.input_fc.weight, fresh_fc)
    # and the whole adapted route trains from its few pairs
    m = train_encoder(cfg, folder, tmp_path / "enc3", quiet=True)
    d = train_decoder(dcfg, folder, tmp_path / "dec3", encoder_run=tmp_path / "enc3", quiet=True)
    assert m["pairs"]["stimuli"] == 20 and d["init_from"]["rule"] == "group encoder"


@pytest.mark.parametrize("name,subject", [("single", None), ("group", 2)])
def test_a_run_written_before_loads_and_reconstructs_the_same_images(name, subject, tmp_path):
    """tests/data/old_runs: decoder runs written by the trainers before they became one per stage (make_old_runs.py)."""
    root = tmp_path / "data"
    simulate_group(root, GUARD_SIM, [1, 2])
    run = tmp_path / name
    shutil.copytree(GUARD.parent / "old_runs" / name, run)
    got = load_reconstructions(reconstruct(run, "test", data_dir=root, subject=subject))["reconstructions"]
    with np.load(run / "expected.npz") as z:
        expected = z["reconstructions"]
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert got.shape == expected.shape and diff.max() <= 1 and (diff > 0).mean() < 0.01   # uint8: rounding at most
