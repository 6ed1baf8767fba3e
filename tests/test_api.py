"""The Python API and `reconstruct --fmri`: the same images as `reconstruct`, any array of the right width."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import brainrecon
from brainrecon.api import decode_fmri
from brainrecon.config import load_config
from brainrecon.data import layout
from brainrecon.errors import UserError
from brainrecon.reconstruct import load_reconstructions, reconstruct
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def runs(tiny_subject, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    enc = root / "encoder"
    train_encoder(load_config("encoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "model.input_size": 32, "train.milestones": "[]"})), tiny_subject, enc, quiet=True)
    dec = root / "decoder"
    train_decoder(load_config("decoder", "rgbd", "demo", tiny_overrides(**{
        "train.epochs": 1, "train.milestones": "[]", "train.self_supervision": "false"})), tiny_subject, dec,
        quiet=True)
    return enc, dec


def test_api_decodes_what_reconstruct_writes(runs, tiny_subject):
    _, dec = runs
    recon = load_reconstructions(reconstruct(dec, "test", data_dir=tiny_subject, device="cpu"))
    with np.load(layout.subject_file(tiny_subject, 3)) as npz:
        test_avg, mask = npz["arr_2"], npz["VC"]
    decoder = brainrecon.load_decoder(dec, device="cpu")
    images = decoder.decode(test_avg[:, mask])
    assert images.dtype == np.float32 and images.shape == recon["reconstructions"].shape
    assert 0 <= images.min() and images.max() <= 1
    assert np.array_equal(np.round(images * 255).astype(np.uint8), recon["reconstructions"])
    with pytest.raises(UserError, match=rf"takes \(N, {mask.sum()}\)"):
        decoder.decode(test_avg[:, :10])


def test_api_encoder_predicts_voxels(runs, tiny_subject):
    enc, _ = runs
    encoder = brainrecon.load_encoder(enc, device="cpu")
    from brainrecon.data.release import load_stimuli
    images = load_stimuli(tiny_subject, "rgbd", 32).test                    # uint8 (N, 32, 32, 4)
    assert images.dtype == np.uint8
    voxels = encoder.predict(images)
    assert voxels.shape == (len(images), encoder.n_voxels) and np.isfinite(voxels).all()
    assert np.allclose(encoder.predict(images.astype(np.float32) / 255), voxels, atol=1e-5)
    with pytest.raises(UserError, match=r"\(N, H, W, 4\)"):
        encoder.predict(images[..., :3])
    assert brainrecon.load_config("decoder", "rgbd", "demo").data.resolution == 64


def test_reconstruct_fmri_roi_and_full_width(runs, tiny_subject, tmp_path):
    _, dec = runs
    with np.load(layout.subject_file(tiny_subject, 3)) as npz:
        full, mask = npz["arr_2"], npz["VC"]
    np.save(tmp_path / "roi.npy", full[:, mask])
    np.savez(tmp_path / "full.npz", betas=full, other=full[:2])
    from_roi = np.load(decode_fmri(dec, tmp_path / "roi.npy", device="cpu"))["reconstructions"]
    from_full = np.load(decode_fmri(dec, tmp_path / "full.npz", key="betas", out=tmp_path / "f",
                                    device="cpu"))["reconstructions"]
    assert np.array_equal(from_roi, from_full) and (tmp_path / "f" / "grid.png").exists()
    with pytest.raises(UserError, match="name the array with --key"):
        decode_fmri(dec, tmp_path / "full.npz", device="cpu")


def test_reconstruct_fmri_wrong_width_names_the_shape(runs, tmp_path):
    _, dec = runs
    np.save(tmp_path / "bad.npy", np.zeros((4, 7), np.float32))
    result = subprocess.run([sys.executable, "-m", "brainrecon", "reconstruct", str(dec), "--fmri",
                             str(tmp_path / "bad.npy"), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "(4, 7)" in result.stderr and "takes (N, " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
