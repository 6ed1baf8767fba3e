"""MiDaS v2.1: published key names and shapes, strict loading, forward pass, tree walk with resume, RGBD npz."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from brainrecon import depth
from brainrecon.cli import app
from brainrecon.data import imagenet
from brainrecon.errors import UserError
from brainrecon.models.midas import MidasNet, load_midas_v21

KEYS = {"large": "model-f6b98070.keys.tsv", "small": "model-small-70d6b9c8.keys.tsv"}
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return MidasNet("small").eval()


@pytest.mark.parametrize("size", ["small", "large"])
def test_key_names_and_shapes_match_the_published_list(size):
    model = MidasNet(size)
    own = {k: "x".join(map(str, v.shape)) if v.dim() else "scalar" for k, v in model.state_dict().items()}
    published = dict(line.split("\t") for line in (DATA / KEYS[size]).read_text().strip().splitlines())
    assert own == published


@pytest.mark.parametrize("wrapped", [False, True])
def test_published_style_checkpoint_loads_strictly(tmp_path, small_net, wrapped):
    state = {k: v for k, v in small_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": state, "optimizer": {}} if wrapped else state, tmp_path / "m.pt")
    loaded = load_midas_v21(tmp_path / "m.pt", "small")
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), small_net(x))


def test_wrong_checkpoint_is_a_user_error(tmp_path, small_net):
    state = dict(small_net.state_dict())
    state["scratch.layer1_rn.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="shape mismatch"):
        load_midas_v21(tmp_path / "bad.pt", "small")
    with pytest.raises(UserError, match="fetch-data --only midas"):
        load_midas_v21(tmp_path / "absent.pt", "small")


def test_forward_shape_and_range(small_net):
    with torch.inference_mode():
        y = small_net(torch.rand(2, 3, 96, 128))
    assert y.shape == (2, 96, 128) and float(y.min()) >= 0
    out = depth.predict(small_net, [np.zeros((50, 70, 3), np.uint8) + 100], "cpu")[0]
    assert out.shape == (50, 70) and out.dtype == np.uint8
    assert depth.net_shape(375, 500, 256) == (256, 352)


def make_tree(root: Path, rng):
    for cls, names in {"n01": ["a.JPG", "b.png"], "n02": ["c.jpeg", "corrupt.jpg"], "n03/sub": ["d.PNG"]}.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            if n.startswith("corrupt"):
                (root / cls / n).write_bytes(b"not an image")
            else:
                Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
                    root / cls / n, format="PNG" if n.lower().endswith("png") else "JPEG")


def test_tree_walk_skips_corrupt_and_resumes(tmp_path, small_net, rng):
    make_tree(tmp_path / "imgs", rng)
    files = imagenet.list_images(tmp_path / "imgs")
    assert [f.name for f in files] == ["a.JPG", "b.png", "c.jpeg", "corrupt.jpg", "d.PNG"]
    report = depth.depth_tree(tmp_path / "imgs", tmp_path / "out", small_net, "cpu", batch_size=2)
    assert report.written == 4 and len(report.failed) == 1 and "corrupt" in report.failed[0][0]
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == ["00000000.png", "00000001.png", "00000002.png", "00000004.png"]
    with Image.open(tmp_path / "out/00000000.png") as im:
        assert im.mode == "L" and im.size == (56, 40)
    (tmp_path / "out/00000001.png").unlink()                      # a partial earlier run
    again = depth.depth_tree(tmp_path / "imgs", tmp_path / "out", small_net, "cpu", batch_size=2)
    assert again.written == 1 and again.skipped_existing == 3


def test_rgbd_npz_builder(tmp_path, small_net, rng):
    stim = tmp_path / "images_32.npz"
    np.savez(stim, train_images=rng.random((3, 32, 32, 3)).astype(np.float32),
             test_images=rng.random((2, 32, 32, 3)).astype(np.float32))
    path = depth.rgbd_npz(stim, tmp_path, small_net, "cpu", "small", source_size=64)
    assert path.name == "rgbd_32_from_64_small_png_uint8.npz"
    with np.load(path) as z:
        assert z["train_images"].shape == (3, 32, 32, 4) and z["test_images"].shape == (2, 32, 32, 4)
        assert z["train_images"].dtype == np.float32 and 0 <= z["test_images"].min() and z["test_images"].max() <= 1


def test_cli_missing_weights_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["make-depth", "--images", str(tmp_path), "--out", str(tmp_path / "o"),
                                 "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "fetch-data --only midas" in r.output and "--weights" in r.output
