"""convert-nsd on a mini NSD tree written by tests/nsd_writer.py, against an independent numpy computation."""

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainrecon.data.release import load_stimuli, load_subject
from brainrecon.errors import DataError
from brainrecon.sources.nsd import files
from brainrecon.sources.nsd.convert import NsdOptions, convert_nsd
from tests.nsd_writer import write_mini_nsd


@pytest.fixture
def mini(tmp_path):
    return write_mini_nsd(tmp_path / "nsd", with_ncsnr=True)


def reference(m, test_repeats=3, train="trials"):
    """The documented steps, written again directly on the generated (trials, X, Y, Z) arrays."""
    mask = m.nsdgeneral > 0
    x = m.betas[:, mask].astype(np.float64) / 300          # C order over (X, Y, Z), as documented
    z = np.empty_like(x)
    for s in range(m.sessions):
        rows = slice(s * m.per_session, (s + 1) * m.per_session)
        sd = x[rows].std(0)
        z[rows] = (x[rows] - x[rows].mean(0)) / np.where(sd > 0, sd, 1)
    ids = m.trial_ids
    shared = np.isin(ids, m.shared)
    test_ids = np.array(sorted(i for i in set(ids[shared]) if (ids == i).sum() >= test_repeats))
    train_ids = np.unique(ids[~shared])
    test_rows = [t for t in range(len(ids)) if ids[t] in test_ids and (ids[:t] == ids[t]).sum() < test_repeats]
    test_labels = np.searchsorted(test_ids, ids[test_rows])
    if train == "trials":
        train_fmri, train_labels = z[~shared], np.searchsorted(train_ids, ids[~shared])
    else:
        train_fmri = np.stack([z[ids == i].mean(0) for i in train_ids])
        train_labels = np.arange(len(train_ids))
    avg = np.stack([z[test_rows][test_labels == k].mean(0) for k in range(len(test_ids))])
    return dict(train_fmri=train_fmri, train_labels=train_labels, test_trials=z[test_rows], test_labels=test_labels,
                test_avg=avg, train_ids=train_ids, test_ids=test_ids, mask=mask)


@pytest.mark.parametrize("train", ["trials", "average"])
def test_convert_equals_independent_computation(mini, tmp_path, train):
    out = tmp_path / "out"
    record = convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=out, resolution=16, train=train, block=7))
    ref = reference(mini, train=train)
    npz = np.load(out / "sbj_1.npz")
    np.testing.assert_allclose(npz["arr_0"], ref["train_fmri"], atol=1e-5)
    np.testing.assert_array_equal(npz["arr_3"], ref["train_labels"])
    np.testing.assert_allclose(npz["arr_1"], ref["test_trials"], atol=1e-5)
    np.testing.assert_array_equal(npz["arr_4"], ref["test_labels"])
    np.testing.assert_allclose(npz["arr_2"], ref["test_avg"], atol=1e-5)
    xyz = np.stack(np.nonzero(ref["mask"]), 1)
    np.testing.assert_array_equal(npz["voxel_xyz"], xyz)
    # ROI masks from the label volumes and their ctab names
    prf, faces = mini.prf[ref["mask"]], mini.faces[ref["mask"]]
    np.testing.assert_array_equal(npz["V1"], np.isin(prf, [1, 2]))
    np.testing.assert_array_equal(npz["V4"], prf == 7)
    np.testing.assert_array_equal(npz["LVC"], np.isin(prf, [1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(npz["FFA"], np.isin(faces, [2, 3]))
    np.testing.assert_array_equal(npz["HVC"], faces > 0)
    assert not npz["PPA"].any() and not npz["LOC"].any() and npz["VC"].all()
    assert "absent" in record["rois"]["floc-places"]
    # noise ceiling from ncsnr
    ncsnr = np.asarray(nib.load(mini.root / files.ncsnr(1)).dataobj)[ref["mask"]].astype(np.float64)
    np.testing.assert_allclose(npz["arr_5"], np.sqrt(ncsnr ** 2 / (ncsnr ** 2 + 1 / 3)), rtol=1e-5)
    assert record["noise_ceiling"].startswith("ncsnr.nii.gz")
    # images: brick rows of the sorted ids, resized
    images = np.load(out / "images_16.npz")
    np.testing.assert_array_equal(images["train_nsd_ids"], ref["train_ids"])
    np.testing.assert_array_equal(images["test_nsd_ids"], ref["test_ids"])
    from PIL import Image
    first = np.asarray(Image.fromarray(mini.brick[ref["test_ids"][0] - 1]).resize((16, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(images["test_images"][0], first)
    # the release readers take the outputs as they are
    subject, stimuli = load_subject(out, 1, "VC"), load_stimuli(out, "rgb", 16)
    assert subject.test_trials.shape == (len(ref["test_ids"]), 3, int(ref["mask"].sum()))
    assert stimuli.train.shape[0] == len(ref["train_ids"])
    saved = json.loads((out / "convert.json").read_text())
    assert saved["dropped"]["shared_images_with_too_few_repeats"] == {str(mini.shared[16]): 2}
    assert {i["path"].split("/")[-1] for i in saved["inputs"]} >= {"nsd_expdesign.mat", "betas_session01.hdf5"}
    assert all(len(i["sha256"]) == 64 for i in saved["inputs"])


def test_ceiling_from_repeats_without_ncsnr(tmp_path):
    m = write_mini_nsd(tmp_path / "nsd")
    record = convert_nsd(NsdOptions(subject=1, nsd_dir=m.root, out=tmp_path / "out", resolution=16))
    assert "absent" in record["noise_ceiling"]
    from brainrecon.data.release import noise_ceiling_from_repeats
    ref = reference(m)
    grouped = ref["test_trials"][np.argsort(ref["test_labels"], kind="stable")].reshape(len(ref["test_ids"]), 3, -1)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "sbj_1.npz")["arr_5"],
                               noise_ceiling_from_repeats(grouped)[0], atol=1e-5)


def _nothing_written(out):
    return not (out / "sbj_1.npz").exists() and not list(out.glob("images_*.npz"))


def test_transposed_mask_is_refused(mini, tmp_path):
    path = mini.root / files.roi_volume(1, "nsdgeneral")
    nib.save(nib.Nifti1Image(mini.nsdgeneral.transpose(2, 1, 0).copy(), np.eye(4)), str(path))
    with pytest.raises(DataError, match="betas_session01.hdf5.*reverse of the nsdgeneral mask.*mask's own order"):
        convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=tmp_path / "out", resolution=16))
    assert _nothing_written(tmp_path / "out")


def test_misaligned_mask_of_the_right_shape_is_refused(mini, tmp_path):
    path = mini.root / files.roi_volume(1, "nsdgeneral")
    nib.save(nib.Nifti1Image(mini.nsdgeneral[:, :, ::-1].copy(), np.eye(4)), str(path))
    with pytest.raises(DataError, match="0 in every trial.*misaligned"):
        convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=tmp_path / "out", resolution=16))
    assert _nothing_written(tmp_path / "out")


def test_shuffled_session_is_refused(mini, tmp_path):
    path = mini.root / files.betas(1, 2)
    with h5py.File(path, "r+") as f:
        data = f["betas"][...]
        f["betas"][...] = data[np.random.default_rng(1).permutation(len(data))]
    with pytest.raises(DataError, match="betas_session02.hdf5: session 2's trials are no closer"):
        convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=tmp_path / "out", resolution=16))
    assert _nothing_written(tmp_path / "out")
    record = convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=tmp_path / "out", resolution=16,
                                    repeat_check=False))
    assert record["repeat_check"][2]["z"] < 3 < record["repeat_check"][1]["z"]


def test_missing_session_and_bad_inputs(mini, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="betas_session04.hdf5: not found.*fetch-data --only nsd --subjects 1 "
                                        "--sessions 4"):
        convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=out, sessions=[1, 2, 3, 4], resolution=16))
    from scipy.io import loadmat, savemat
    design = mini.root / files.EXPDESIGN
    mat = loadmat(design)
    mat["subjectim"][0, 3] = 73001
    savemat(design, {k: mat[k] for k in ("masterordering", "subjectim", "sharedix")})
    with pytest.raises(DataError, match="nsd_expdesign.mat: subjectim has 1 values outside 1..73000"):
        convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=out, resolution=16))
    assert _nothing_written(out)


def test_session_of_another_volume_is_refused(mini, tmp_path):
    path = mini.root / files.betas(1, 3)
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=np.zeros((mini.per_session, 5, 9, 8), dtype=np.int16))
    with pytest.raises(DataError, match="betas_session03.hdf5: betas have shape"):
        convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=tmp_path / "out", resolution=16))


def test_sessions_parse():
    assert files.parse_sessions("1-3,5", 1) == [1, 2, 3, 5]
    assert files.parse_sessions(None, 4) == list(range(1, 31))
    from brainrecon.errors import UserError
    with pytest.raises(UserError, match="subject 4 has sessions 1..30"):
        files.parse_sessions("1-37", 4)


def test_unpaired_images_are_brick_images_the_subject_never_saw(mini, tmp_path):
    out = tmp_path / "out"
    record = convert_nsd(NsdOptions(subject=1, nsd_dir=mini.root, out=out, resolution=16, unpaired=20))
    pngs = sorted((out / "imagenet" / "val" / "nsd_unseen").glob("*.png"))
    ids = [int(p.stem) for p in pngs]
    from scipy.io import loadmat
    own = loadmat(mini.root / files.EXPDESIGN)["subjectim"][0]
    assert len(ids) == 20 == record["unpaired_images"]["count"] and not set(ids) & set(own.astype(int))
    from PIL import Image
    expected = np.asarray(Image.fromarray(mini.brick[ids[0] - 1]).resize((16, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[0])), expected)
    from brainrecon.data import imagenet
    assert len(imagenet.list_images(out / "imagenet" / "val")) == 20  # what train-decoder reads as unpaired
