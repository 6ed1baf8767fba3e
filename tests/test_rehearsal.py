"""The GOD rehearsal world loads through every reader: fetched from its loopback server, the release files, the
public GOD sources (convert-god), the networks (release VGGs, MiDaS, torchvision's through its weights API); and
make-depth on a stimulus file writes the file training reads."""


import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.config import ROIS
from brainrecon.data import imagenet, layout, release
from brainrecon.errors import DataError, UserError
from brainrecon.simulation.rehearsal import GOD_TEST_IN_ILSVRC, RehearsalConfig, make_world
from brainrecon.simulation.serve import FileServer

CFG = RehearsalConfig(subjects=(1, 3), n_train=12, n_voxels=60, repeats=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    return make_world(root, CFG, torch_home=root / "torch_home")


@pytest.fixture(scope="module")
def fetched(world, tmp_path_factory):
    """The release as fetch-data downloads it from the world's server."""
    data = tmp_path_factory.mktemp("data")
    with FileServer(world.release) as server:
        r = CliRunner().invoke(app, ["fetch-data", "--yes", "--data-dir", str(data), "--base-url", server.url,
                                     "--only", "stimuli", "--only", "rgbd", "--only", "fmri", "--subjects", "1,3",
                                     "--only", "vgg", "--only", "imagenet", "--only", "depth", "--only", "midas",
                                     "--only", "god-h5"])
    assert r.exit_code == 0, r.output
    return data


def test_release_files_load_with_their_names_keys_and_shapes(fetched):
    for modality, channels in (("rgb", 3), ("depth", 1), ("rgbd", 4)):
        s = release.load_stimuli(fetched, modality, 112)
        assert s.train.shape == (CFG.n_train, 112, 112, channels) and s.test.shape == (50, 112, 112, channels)
    with np.load(layout.rgbd_file(fetched)) as z:
        assert set(z.files) == {"train_images", "test_images"} and z["train_images"].dtype == np.float32
    for subject in CFG.subjects:
        sub = release.load_subject(fetched, subject)
        release.check_pairing(sub, release.load_stimuli(fetched, "rgb"), layout.stimuli_file(fetched))
        assert sub.test_trials.shape[:2] == (50, CFG.repeats)
        with np.load(layout.subject_file(fetched, subject)) as z:
            assert set(z.files) == {f"arr_{i}" for i in range(7)} | set(ROIS)


def test_unpaired_tree_has_real_synsets_and_paired_depth(fetched):
    files = imagenet.list_images(layout.unpaired_image_dir(fetched))
    synsets = {f.parent.name for f in files}
    assert set(GOD_TEST_IN_ILSVRC) <= synsets and "n01440764" in synsets
    for size in ("small", "large"):
        assert len(imagenet.list_depth_pngs(layout.unpaired_depth_dir(fetched, size), len(files))) == len(files)
    pool = imagenet.load_unpaired(layout.unpaired_image_dir(fetched), layout.unpaired_depth_dir(fetched), 112)
    assert pool.shape == (len(files), 112, 112, 4)


def test_networks_load_strictly_by_their_published_keys(fetched, world, monkeypatch):
    from brainrecon.models.midas import load_midas_v21
    from brainrecon.models.vgg import load_imagenet_vgg, load_release_vgg
    from brainrecon.simulation.checkpoints import RELEASE_VGGS
    x = torch.rand(1, 4, 64, 64)
    for arch, modality, large in RELEASE_VGGS:
        chans = 4 if modality == "rgbd" else 1
        net = load_release_vgg(layout.release_vgg_file(fetched, arch, modality, large), arch, chans)
        assert torch.isfinite(net.features(x[:, :chans])).all()
    for size in ("small", "large"):
        assert torch.isfinite(load_midas_v21(layout.midas_file(fetched, size), size)(x[:, :3])).all()
    monkeypatch.setenv("TORCH_HOME", str(world.torch_home))
    for arch in ("vgg16", "vgg19"):
        assert torch.isfinite(load_imagenet_vgg(arch).features(x[:, :3])).all()
    from brainrecon.evaluation.classify import feature_network
    assert feature_network("alexnet", "cpu")(torch.rand(1, 3, 112, 112)).shape == (1, 256 * 6 * 6)
    monkeypatch.setenv("TORCH_HOME", str(world.root / "empty_torch_home"))   # never a random network by itself
    with pytest.raises(UserError, match="weights"):
        load_imagenet_vgg("vgg16")


def test_convert_god_on_the_public_sources_gives_the_release_arrays(fetched, world, tmp_path):
    out = tmp_path / "converted"
    r = CliRunner().invoke(app, ["convert-god", "--subject", "3", "--images", str(world.photos), "--h5",
                                 str(fetched / "Subject3.h5"), "--out", str(out), "--resolution", "32"])
    assert r.exit_code == 0, r.output
    with np.load(layout.subject_file(out, 3)) as conv, np.load(layout.subject_file(fetched, 3)) as rel:
        vc = rel["VC"]
        for key in ("arr_0", "arr_1", "arr_2"):
            np.testing.assert_allclose(conv[key], rel[key][:, vc], atol=1e-5)
        for key in ("arr_3", "arr_4"):
            np.testing.assert_array_equal(conv[key], rel[key])
    with np.load(layout.stimuli_file(out, 32)) as z:
        assert z["train_images"].shape == (1200, 32, 32, 3) and z["test_images"].shape == (50, 32, 32, 3)


def test_make_depth_on_the_stimuli_writes_the_file_training_reads(fetched, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "images_112.npz").symlink_to(layout.stimuli_file(fetched))
    with pytest.raises(DataError, match="make-depth --rgbd-npz"):
        release.load_stimuli(data, "rgbd")
    args = ["make-depth", "--rgbd-npz", str(data / "images_112.npz"), "--out", str(data), "--data-dir",
            str(fetched), "--net-size", "32", "--device", "cpu"]
    small = CliRunner().invoke(app, args + ["--model", "small"])
    assert small.exit_code == 0 and "read rgbd_112_from_224_large_png_uint8.npz only" in " ".join(small.output.split())
    with pytest.raises(DataError, match="rgbd_112_from_224_small_png_uint8.npz"):
        release.load_stimuli(data, "rgbd")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert layout.rgbd_file(data).exists() and "only" not in said
    assert "MiDaS input side 32, not the release's 384" in said     # the coarser maps are announced, not hidden
    s = release.load_stimuli(data, "rgbd")
    rgb = release.load_stimuli(fetched, "rgb")
    np.testing.assert_array_equal(s.train[..., :3], rgb.train)
    assert s.test.shape == (50, 112, 112, 4)


def test_dry_run_names_every_file_and_creates_nothing(world, tmp_path):
    with FileServer(world.release) as server:
        r = CliRunner().invoke(app, ["fetch-data", "--dry-run", "--data-dir", str(tmp_path / "new"), "--base-url",
                                     server.url, "--only", "all"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "new").exists()
    for name in ("images_112.npz", "sbj_5.npz", "imagenet_val.tar.gz", "vgg19_rgbd_large_norm_within_img_best"):
        assert name in r.output
