"""convert-god: BData files written here in the exact schema convert back to the simulated subject they came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrecon.cli import app
from brainrecon.config import ROIS
from brainrecon.data import layout, release
from brainrecon.errors import DataError
from brainrecon.sources.god import ConvertOptions, convert_god
from brainrecon.sources.god_lists import carried_lists, stimulus_id
from tests.bdata_writer import god_from_subject

RES = 32  # the tiny subject's stimulus size


@pytest.fixture(scope="module")
def god(tiny_subject, tmp_path_factory):
    return god_from_subject(tiny_subject, tmp_path_factory.mktemp("god"), RES)


def convert(w, out: Path, **kw):
    opts = ConvertOptions(subject=3, image_lists=w.lists, **kw)
    return convert_god(w.h5, w.photos, out, opts)


@pytest.mark.parametrize("old_names", [False, True], ids=["dataset/metadata", "dataSet/metaData"])
def test_round_trip_gives_back_the_simulated_subject(tiny_subject, tmp_path, old_names):
    w = god_from_subject(tiny_subject, tmp_path / "src", RES, old_names=old_names)
    record = convert(w, tmp_path / "out", resolution=RES)
    e = w.expected
    with np.load(layout.subject_file(tmp_path / "out", 3)) as sbj:
        np.testing.assert_array_equal(sbj["arr_3"], e["arr_3"])               # same labels
        np.testing.assert_array_equal(sbj["arr_4"], e["arr_4"])
        np.testing.assert_allclose(sbj["arr_0"], e["arr_0"], atol=1e-5)        # voxels (already z-scored per run)
        np.testing.assert_allclose(sbj["arr_1"], e["arr_1"], atol=1e-5)
        np.testing.assert_allclose(sbj["arr_2"], e["arr_2"], atol=1e-5)        # same averages
        for name in ROIS:
            np.testing.assert_array_equal(sbj[name], e["masks"][name])         # same masks
    subject = release.load_subject(tmp_path / "out", 3)                        # the trainer reads it as release data
    stimuli = release.load_stimuli(tmp_path / "out", "rgb", RES)
    release.check_pairing(subject, stimuli, layout.stimuli_file(tmp_path / "out", RES))
    grey = w.grey_train_image
    others = np.arange(len(e["train_images"])) != grey
    np.testing.assert_array_equal(stimuli.train[others], e["train_images"][others])
    np.testing.assert_array_equal(stimuli.test, e["test_images"])              # incl. the centre-cropped wide one
    replicated = np.repeat(e["train_images"][grey].mean(2).round()[..., None], 3, 2)
    np.testing.assert_array_equal(stimuli.train[grey], replicated.astype(np.uint8))
    assert record["dropped"]["imagery_samples"] == 6 and record["dropped"]["one_back_repeats"] > 0
    assert record["counts"]["repeats_per_test_image"] == 6
    provenance = json.loads((tmp_path / "out/convert.json").read_text())
    assert provenance["normalisation"].startswith("each voxel z-scored within each run")
    assert len(provenance["source"]["sha256"]) == 64


def test_second_resolution(god, tmp_path):
    convert(god, tmp_path, resolution=16)
    stimuli = release.load_stimuli(tmp_path, "rgb", 16)
    assert stimuli.train.shape[1:] == (16, 16, 3)
    pooled = god.expected["test_images"].reshape(-1, 16, 2, 16, 2, 3).mean((2, 4))
    assert np.abs(stimuli.test.astype(float) - pooled).mean() < 6      # bicubic with anti-aliasing ~ 2x2 mean


def test_allow_missing_drops_pairs_consistently(god, tmp_path):
    name = next(god.photos.rglob("*.JPEG"))
    moved = tmp_path / "aside" / name.name
    moved.parent.mkdir()
    name.rename(moved)
    try:
        with pytest.raises(DataError, match=r"1 of \d+ listed photos not found .*--allow-missing"):
            convert(god, tmp_path / "strict", resolution=RES)
        assert not (tmp_path / "strict").exists()
        record = convert(god, tmp_path / "lenient", resolution=RES, allow_missing=True)
    finally:
        moved.rename(name)
    missing = record["dropped"]["training_images_without_photo"] + record["dropped"]["test_images_without_photo"]
    assert missing == [name.name]
    subject = release.load_subject(tmp_path / "lenient", 3)
    stimuli = release.load_stimuli(tmp_path / "lenient", "rgb", RES)
    release.check_pairing(subject, stimuli, layout.stimuli_file(tmp_path / "lenient", RES))
    n_train, n_test = len(god.expected["train_images"]), len(god.expected["test_images"])
    assert len(stimuli.train) + len(stimuli.test) == n_train + n_test - 1


BAD = {
    "float32 ids": (dict(dtype=np.float32), "float64"),
    "missing ROI key": (dict(drop_keys=("ROI_FFA",)), "ROI_FFA"),
    "no DataType column": (dict(drop_keys=("DataType",)), "DataType"),
    "unequal test repeats": (dict(drop_test_trial=True), "same number of repeats"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_bdata_is_one_line_exit_2_and_writes_nothing(tiny_subject, tmp_path, case):
    kwargs, message = BAD[case]
    w = god_from_subject(tiny_subject, tmp_path / "src", RES, **kwargs)
    assert_refused(w, tmp_path / "out", message)


def assert_refused(w, out: Path, message: str, h5: Path | None = None, lists=None, photos: Path | None = None):
    lists = lists or w.lists
    result = CliRunner().invoke(app, ["convert-god", "--subject", "3", "--h5", str(h5 or w.h5), "--images",
                                      str(photos or w.photos), "--image-list", f"{lists[0]},{lists[1]}",
                                      "--resolution", str(RES), "--out", str(out)], terminal_width=400)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    lines = [s for s in result.output.strip().splitlines() if not s.startswith("convert-god: ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert not out.exists() or not any(out.iterdir())


def test_truncated_h5(god, tmp_path):
    cut = tmp_path / "Subject3.h5"
    cut.write_bytes(god.h5.read_bytes()[:4000])
    assert_refused(god, tmp_path / "out", "not a readable HDF5 file", h5=cut)


def test_id_not_in_the_list(god, tmp_path):
    lines = god.lists[0].read_text().splitlines()
    short = tmp_path / "train.csv"
    short.write_text("\n".join(lines[1:]) + "\n")
    assert_refused(god, tmp_path / "out", "match no id of the training image list", lists=(short, god.lists[1]))


def test_non_image_among_the_photos(god, tmp_path):
    import shutil
    photos = tmp_path / "photos"
    shutil.copytree(god.photos, photos)
    victim = next(photos.rglob("*.JPEG"))
    victim.write_bytes(b"this is not an image")
    assert_refused(god, tmp_path / "out", "not a readable image", photos=photos)


def test_float32_collapses_the_real_ids():
    """The reason for the float64 check: the GOD training ids collapse in float32."""
    train, test = carried_lists()
    assert len(np.unique(train.ids.astype(np.float32))) < 200 < len(np.unique(train.ids)) == 1200


def test_carried_lists_are_consistent():
    """Every id of the shipped GOD lists agrees with its file name (the format is self-checking)."""
    train, test = carried_lists()
    assert (len(train.ids), len(test.ids)) == (1200, 50)
    for lst in (train, test):
        assert all(stimulus_id(n) == i for n, i in zip(lst.names, lst.ids))
    assert train.names[0] == "n01518878_10042.JPEG" and "n03626115_19498.JPEG" in test.names
    assert stimulus_id("n03626115_19498.JPEG") == 3626115.019498
