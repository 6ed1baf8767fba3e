"""Every reader round-trips, and every class of bad input gives one DataError naming file, key and fix."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.data import imagenet, layout, release
from brainrecon.errors import DataError


def copy_subject(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite_subject(root, **changes):
    path = layout.subject_file(root, 3)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez(path, **arrays)
    return path


def test_stimuli_round_trip(tmp_path, rng):
    train = rng.integers(0, 256, (5, 16, 16, 4), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 16, 16, 4), dtype=np.uint8)
    release.write_stimuli(layout.rgbd_file(tmp_path, 16), train, test)
    back = release.load_stimuli(tmp_path, "rgbd", 16)
    np.testing.assert_array_equal(back.train, train)
    np.testing.assert_array_equal(release.load_stimuli(tmp_path, "depth", 16).test, test[..., 3:])


def test_subject_round_trip(tiny_subject):
    sub = release.load_subject(tiny_subject, 3, "V1")
    with np.load(layout.subject_file(tiny_subject, 3)) as z:
        mask = z["V1"]
        np.testing.assert_allclose(sub.train_fmri, z["arr_0"][:, mask])
        np.testing.assert_allclose(sub.test_trials.mean(1), z["arr_2"][:, mask], atol=1e-5)


def test_depth_folder_pairs_in_natural_order(tiny_subject):
    images = imagenet.list_images(layout.unpaired_image_dir(tiny_subject))
    depths = imagenet.list_depth_pngs(layout.unpaired_depth_dir(tiny_subject, "small"), len(images))
    assert [int(p.stem) for p in depths] == list(range(len(images)))
    pool = imagenet.load_unpaired(layout.unpaired_image_dir(tiny_subject),
                                  layout.unpaired_depth_dir(tiny_subject, "small"), 32)
    assert pool.shape == (64, 32, 32, 4) and pool.dtype == np.uint8


BAD_CASES = {
    "missing key": (dict(arr_2=None), "key 'arr_2' missing"),
    "wrong shape": (dict(arr_5=np.zeros((3, 3), np.float32)), "expected 1-D"),
    "voxel mismatch": (dict(arr_6=np.zeros(7, np.float32)), "voxel counts must agree"),
    "test labels out of range": (dict(arr_4=np.full(72, 99)), "key 'arr_4' expected labels"),
    "wrong dtype": (dict(arr_0=np.zeros((400, 150), np.int32)), "expected floats"),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_subject_files(tiny_subject, tmp_path, case):
    root = copy_subject(tiny_subject, tmp_path / "d")
    changes, message = BAD_CASES[case]
    path = rewrite_subject(root, **changes)
    with pytest.raises(DataError, match=message) as e:
        release.load_subject(root, 3)
    assert str(path) in str(e.value)


def test_train_labels_out_of_range(tiny_subject, tmp_path):
    root = copy_subject(tiny_subject, tmp_path / "d")
    rewrite_subject(root, arr_3=np.arange(400) + 500)
    sub = release.load_subject(root, 3)
    with pytest.raises(DataError, match="arr_3' expected labels in 0..399"):
        release.check_pairing(sub, release.load_stimuli(root, "rgb", 32), root / "images_32.npz")


def test_unknown_roi_and_missing_file(tiny_subject, tmp_path):
    with pytest.raises(DataError, match="unknown ROI 'V9'"):
        release.load_subject(tiny_subject, 3, "V9")
    with pytest.raises(DataError, match="fetch-data --only fmri"):
        release.load_subject(tmp_path, 1)


def test_depth_count_mismatch(tiny_subject, tmp_path):
    root = copy_subject(tiny_subject, tmp_path / "d")
    next(layout.unpaired_depth_dir(root, "small").glob("*.png")).unlink()
    with pytest.raises(DataError, match="63 depth PNGs but 64 images"):
        imagenet.load_unpaired(layout.unpaired_image_dir(root), layout.unpaired_depth_dir(root, "small"), 32)


def test_stimulus_values_out_of_range(tmp_path):
    np.savez(layout.stimuli_file(tmp_path, 16), train_images=np.full((2, 16, 16, 3), 3.0),
             test_images=np.zeros((1, 16, 16, 3)))
    with pytest.raises(DataError, match=r"'train_images' has 1536 values outside \[0, 1\] \(found \[3, 3\]\), "
                                        r"the first at \[0, 0, 0, 0\]"):
        release.load_stimuli(tmp_path, "rgb", 16)


def test_cli_prints_one_line_and_exits_2(tiny_subject, tmp_path):
    root = copy_subject(tiny_subject, tmp_path / "d")
    rewrite_subject(root, arr_6=np.zeros(7, np.float32))
    result = CliRunner().invoke(app, ["train-encoder", "--data-dir", str(root), "--config", "demo",
                                      "--set", "data.resolution=32", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    lines = [s for s in result.output.strip().splitlines() if s.strip()]
    assert len(lines) == 1 and "voxel counts must agree" in lines[0] and "Traceback" not in result.output


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINRECON_DATA", str(tmp_path / "env"))
    assert layout.data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert layout.data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BRAINRECON_DATA")
    assert "brainrecon" in str(layout.data_dir(None))
