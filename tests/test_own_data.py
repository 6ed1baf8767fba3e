"""A lab's own data: brainrecon.data.write_subject and `brainrecon import-arrays` on arrays made here (smooth random
images, fMRI carrying a planted linear signal of them), the worked example of docs/your-data.md walked as written
(only epochs and steps added), the same files from both ways in, and one-line refusals of bad arrays."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import brainrecon.config
from brainrecon.cli import app
from brainrecon.data import release, write_subject
from brainrecon.errors import DataError, UserError
from brainrecon.version import version_string

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "your-data.md"
TINY = ["train.epochs=1", "train.steps_per_epoch=3", "train.batch_size=16"]
V = 120


def smooth_images(rng, n: int, size=(48, 40), mode="RGB") -> np.ndarray:
    """n smooth random images, (n, H, W, 3) uint8 (L: (n, H, W)), from 4 x 4 latents upsampled bilinearly."""
    z = (rng.random((n, 4, 4, 3 if mode == "RGB" else 1)) * 255).astype(np.uint8)
    ims = [Image.fromarray(zz if mode == "RGB" else zz[..., 0]).resize(size, Image.Resampling.BILINEAR) for zz in z]
    return np.stack([np.asarray(im) for im in ims])


@pytest.fixture(scope="module")
def lab():
    """60 unique training images seen twice each, 10 test images x 4 repeats, 120 voxels driven linearly by a coarse
    version of each image plus noise."""
    rng = np.random.default_rng(0)
    train_images, test_images = smooth_images(rng, 60), smooth_images(rng, 10)
    w = rng.standard_normal((48, V)) / 4

    def signal(images):  # each image's 4 x 4 x 3 mean-pooled colours, centred
        return np.stack([np.asarray(Image.fromarray(im).resize((4, 4), Image.Resampling.BOX)) for im in images]) \
            .reshape(len(images), -1) / 255 - 0.5

    index = np.tile(np.arange(60), 2)
    train_fmri = signal(train_images)[index] @ w + 0.3 * rng.standard_normal((len(index), V))
    test_fmri = (signal(test_images) @ w)[:, None, :] + 0.3 * rng.standard_normal((10, 4, V))
    return {"train_fmri": train_fmri.astype(np.float32), "train_images": train_images, "train_image_index": index,
            "test_fmri": test_fmri.astype(np.float32), "test_images": test_images,
            "rois": {"V1": np.arange(V) < 40}}


def save_as_the_doc_says(lab: dict, folder: Path) -> None:
    np.save(folder / "train_fmri.npy", lab["train_fmri"])
    np.save(folder / "train_image_index.npy", lab["train_image_index"])
    np.save(folder / "test_fmri.npy", lab["test_fmri"])
    np.save(folder / "v1.npy", lab["rois"]["V1"])
    save_pngs(folder / "train_images", lab["train_images"])
    save_pngs(folder / "test_images", lab["test_images"])


def save_pngs(folder: Path, images: np.ndarray) -> None:
    """Numbered without zero padding (1.png ... 60.png): read in number order, not string order."""
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i + 1}.png")


def doc_block(language: str, heading: str = "## A worked example") -> str:
    text = DOC.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return re.findall(rf"```{language}\n(.*?)```", text[start:end], re.S)[-1 if language == "python" else 0]


def cli(args: list[str]):
    result = CliRunner().invoke(app, args)
    return result, result.output


def test_the_worked_example_runs_as_written(lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_as_the_doc_says(lab, tmp_path)
    commands = [shlex.split(line)[1:] for line in doc_block("bash").splitlines() if line.startswith("brainrecon ")]
    assert [c[0] for c in commands] == ["import-arrays", "train-encoder", "train-decoder", "train-decoder",
                                        "reconstruct", "reconstruct"]
    for args in commands:
        if args[0].startswith("train-") and "ridge" not in args:
            args = args + sum((["--set", s] for s in TINY), [])
        result, output = cli(args)
        assert result.exit_code == 0, f"brainrecon {' '.join(args)}\n{output}"
    ridge = json.loads((tmp_path / "runs/my_ridge/metrics.json").read_text())
    assert ridge["test_pixcorr"] > 0.5            # the planted signal comes back: images and fMRI paired right
    for run in ("my_dec", "my_ridge"):
        with np.load(tmp_path / f"runs/{run}/reconstruct_test/reconstructions.npz") as z:
            assert z["reconstructions"].shape == (10, 64, 64, 3)
    record = json.loads((tmp_path / "mydata/sbj_1_import.json").read_text())
    assert record["made_by"] == "brainrecon import-arrays" and record["counts"]["train_images"] == 60
    assert record["brainrecon"] == version_string()                # the number and, in a checkout, the git commit
    assert record["inputs"]["--train-images"]["first"] == ["1.png", "2.png", "3.png"]


def test_the_python_equivalent_runs(lab, tmp_path, monkeypatch):
    """The doc's Python block, with the arrays in memory (the training images as a list of arrays) and tiny budgets."""
    monkeypatch.chdir(tmp_path)
    real = brainrecon.config.load_config
    monkeypatch.setattr(brainrecon.config, "load_config", lambda stage, modality, config="paper", overrides=None,
                        *rest: real(stage, modality, config, list(overrides or []) + TINY, *rest))
    names = {"train_fmri": lab["train_fmri"], "train_images": list(lab["train_images"]),
             "train_index": lab["train_image_index"], "test_fmri": lab["test_fmri"],
             "test_images": lab["test_images"], "v1_mask": lab["rois"]["V1"]}
    exec(doc_block("python"), names)                                   # noqa: S102 - the doc's own code
    assert names["recon"].shape == (10, 64, 64, 3)
    assert names["record"]["made_by"] == "brainrecon.data.write_subject"
    subject = release.load_subject(tmp_path / "mydata", 1, "V1")
    assert subject.train_fmri.shape == (120, 40) and subject.test_trials.shape == (10, 4, 40)
    np.testing.assert_array_equal(subject.test_trials, lab["test_fmri"][:, :, :40])
    np.testing.assert_array_equal(subject.train_labels, lab["train_image_index"])


def test_import_arrays_writes_what_write_subject_writes(lab, tmp_path):
    """2-D test trials in a shuffled presentation order with an index, a given ceiling, depth, an .npy mask and a
    NIfTI mask: the command from files and the function from arrays write the same arrays."""
    rng = np.random.default_rng(1)
    order = rng.permutation(40)
    test_index = np.repeat(np.arange(10), 4)[order]
    test_trials = lab["test_fmri"].reshape(40, V)[order]
    ceiling = rng.random(V).astype(np.float32)
    train_depth, test_depth = smooth_images(rng, 60, mode="L"), smooth_images(rng, 10, mode="L")
    brain = np.zeros((5, 6, 7), np.uint8)                              # the volume whose voxels are the columns
    positions = np.sort(rng.choice(brain.size, V, replace=False))
    brain.flat[positions] = 1
    ffa_columns = np.arange(70, 95)
    ffa = np.zeros_like(brain)
    ffa.flat[positions[ffa_columns]] = 1
    ffa_mask = np.isin(np.arange(V), ffa_columns)
    arrays = dict(train_fmri=lab["train_fmri"], train_images=lab["train_images"],
                  train_image_index=lab["train_image_index"], test_fmri=test_trials, test_image_index=test_index,
                  test_images=lab["test_images"], noise_ceiling=ceiling, train_depth=train_depth,
                  test_depth=test_depth, resolution=32)
    write_subject(tmp_path / "py", 2, rois={"V1": lab["rois"]["V1"], "FFA": ffa_mask}, **arrays)

    files = tmp_path / "files"
    files.mkdir()
    for key in ("train_fmri", "train_image_index", "test_fmri", "test_image_index", "noise_ceiling", "test_images"):
        np.save(files / f"{key}.npy", arrays[key])
    np.save(files / "v1.npy", lab["rois"]["V1"].astype(np.uint8))     # 0/1 numbers are read as a mask too
    nib.save(nib.Nifti1Image(brain, np.eye(4)), files / "brain.nii.gz")
    nib.save(nib.Nifti1Image(ffa, np.eye(4)), files / "ffa.nii.gz")
    save_pngs(files / "train_images", lab["train_images"])
    save_pngs(files / "train_depth", train_depth)
    save_pngs(files / "test_depth", test_depth)
    f = lambda name: str(files / name)                                 # noqa: E731
    result, output = cli(["import-arrays", "--subject", "2", "--out", str(tmp_path / "cli"), "--resolution", "32",
                          "--train-fmri", f("train_fmri.npy"), "--train-images", f("train_images"),
                          "--train-image-index", f("train_image_index.npy"), "--test-fmri", f("test_fmri.npy"),
                          "--test-image-index", f("test_image_index.npy"), "--test-images", f("test_images.npy"),
                          "--noise-ceiling", f("noise_ceiling.npy"), "--train-depth", f("train_depth"),
                          "--test-depth", f("test_depth"), "--roi-mask", f"V1={f('v1.npy')}",
                          "--voxel-volume", f("brain.nii.gz"), "--roi-mask", f"FFA={f('ffa.nii.gz')}"])
    assert result.exit_code == 0, output
    for name in ("sbj_2.npz", "images_32.npz", "rgbd_32_from_224_large_png_uint8.npz"):
        with np.load(tmp_path / "py" / name) as a, np.load(tmp_path / "cli" / name) as b:
            assert a.files == b.files, name
            for key in a.files:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), f"{name} {key}"
    with np.load(tmp_path / "cli/sbj_2.npz") as z:
        np.testing.assert_array_equal(z["FFA"], ffa_mask)
        assert not z["V2"].any() and z["VC"].all()
        snr, r = z["arr_6"].astype(np.float64), 4
        np.testing.assert_allclose(np.sqrt(snr / (snr + 1 / r)), np.maximum(ceiling, np.sqrt(1e-3 / (1e-3 + 1 / r))),
                                   rtol=1e-4)                         # the given ceiling comes back from the SNR
    subject = release.load_subject(tmp_path / "cli", 2, "VC")
    by_image = np.stack([test_trials[test_index == i] for i in range(10)])    # regrouped, presentation order kept
    np.testing.assert_array_equal(subject.test_trials, by_image)
    np.testing.assert_array_equal(np.sort(by_image, axis=1), np.sort(lab["test_fmri"], axis=1))
    rgbd = release.load_stimuli(tmp_path / "cli", "rgbd", 32)
    assert rgbd.train.shape == (60, 32, 32, 4)
    record = json.loads((tmp_path / "cli/sbj_2_import.json").read_text())
    assert record["rois"]["FFA"] == "given" and record["rois"]["V2"] == "not given: empty"
    assert record["noise_ceiling"].startswith("given") and "--voxel-volume" in record["inputs"]


def test_16_bit_depth_pngs_are_scaled_to_8_bits_and_float_tiffs_refused(lab, tmp_path):
    """Depth saved as 16-bit grey PNGs (MiDaS's write_depth) comes in as round(value / 257), the same as the 8-bit maps
    given as arrays (Pillow's own conversion would clip it to 255); a float TIFF is one line naming the file."""
    rng = np.random.default_rng(2)
    depth = {"train": smooth_images(rng, 60, mode="L"), "test": smooth_images(rng, 10, mode="L")}
    arrays = {k: lab[k] for k in ("train_fmri", "train_images", "train_image_index", "test_fmri", "test_images")}
    write_subject(tmp_path / "py", 1, resolution=32, train_depth=depth["train"], test_depth=depth["test"], **arrays)
    files = tmp_path / "files"
    files.mkdir()
    for split, maps in depth.items():
        (files / split).mkdir()
        for i, d in enumerate(maps):        # d * 257 + e with |e| <= 128: round(value / 257) gives d back exactly
            wide = d.astype(np.int64) * 257 + rng.integers(-128, 129, d.shape) * (d > 0) * (d < 255)
            Image.fromarray(wide.astype(np.uint16)).save(files / split / f"{i + 1}.png")
    with Image.open(files / "train" / "1.png") as im:
        assert im.mode.startswith("I") and np.asarray(im).max() > 255          # really 16-bit on disk
    for key in ("train_fmri", "train_image_index", "test_fmri", "test_images"):
        np.save(files / f"{key}.npy", arrays[key])
    save_pngs(files / "train_images", lab["train_images"])
    base = ["import-arrays", "--out", str(tmp_path / "cli"), "--resolution", "32",
            "--train-fmri", str(files / "train_fmri.npy"), "--train-images", str(files / "train_images"),
            "--train-image-index", str(files / "train_image_index.npy"), "--test-fmri", str(files / "test_fmri.npy"),
            "--test-images", str(files / "test_images.npy"), "--test-depth", str(files / "test")]
    result, output = cli(base + ["--train-depth", str(files / "train")])
    assert result.exit_code == 0, output
    name = "rgbd_32_from_224_large_png_uint8.npz"
    with np.load(tmp_path / "py" / name) as a, np.load(tmp_path / "cli" / name) as b:
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
    floats = files / "float_depth"                                   # the 16-bit maps, the first one a float TIFF
    shutil.copytree(files / "train", floats)
    (floats / "1.png").unlink()
    Image.fromarray(depth["train"][0].astype(np.float32) / 255).save(floats / "1.tif")
    (tmp_path / "out").mkdir()
    result, output = cli([*base[:2], str(tmp_path / "out"), *base[3:], "--train-depth", str(floats)])
    assert result.exit_code == 2 and len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    assert "1.tif: float pixels (mode F)" in " ".join(output.split()) and "8-bit PNG" in " ".join(output.split())
    assert not any((tmp_path / "out").iterdir())


def test_subjects_share_a_folder_and_nothing_is_overwritten_unasked(lab, tmp_path):
    arrays = {k: lab[k] for k in ("train_fmri", "train_images", "train_image_index", "test_fmri", "test_images")}
    write_subject(tmp_path, 1, resolution=32, **arrays)
    second = write_subject(tmp_path, 2, resolution=32, **arrays)
    assert second["outputs"]["stimuli_kept_as_they_were"] == ["images_32.npz"]
    with pytest.raises(DataError, match="sbj_1.npz: already exists"):
        write_subject(tmp_path, 1, resolution=32, **arrays)
    other = {**arrays, "test_images": lab["test_images"][::-1]}
    with pytest.raises(DataError, match="already exists with other images"):
        write_subject(tmp_path, 3, resolution=32, **other)
    assert not (tmp_path / "sbj_3.npz").exists()
    before = release.load_stimuli(tmp_path, "rgb", 32).test
    write_subject(tmp_path, 3, resolution=32, overwrite=True, **other)
    np.testing.assert_array_equal(release.load_stimuli(tmp_path, "rgb", 32).test, before[::-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_32.npz", *(f"sbj_{n}{s}" for n in (1, 2, 3)
                                                                             for s in (".npz", "_import.json"))]


def _bad(lab, **change):
    base = {k: lab[k] for k in ("train_fmri", "train_images", "train_image_index", "test_fmri", "test_images",
                                "rois")}
    base["resolution"] = 32
    return {**base, **change}


def _with(a: np.ndarray, where, value) -> np.ndarray:
    a = a.copy()
    a[where] = value
    return a


BAD = {  # what is wrong -> (the change, a fragment of the one-line refusal)
    "1-D training fMRI": (lambda lab: {"train_fmri": lab["train_fmri"][:, 0]}, "train_fmri: expected training fMRI"),
    "NaN in training fMRI": (lambda lab: {"train_fmri": _with(lab["train_fmri"], (3, 7), np.nan)},
                             "1 non-finite value (1 NaN, 0 inf), the first at [3, 7]"),
    "inf in test fMRI": (lambda lab: {"test_fmri": _with(lab["test_fmri"], (1, 2, 3), np.inf)}, "0 NaN, 1 inf"),
    "integer fMRI": (lambda lab: {"train_fmri": lab["train_fmri"].astype(np.int16)}, "expected floats"),
    "voxel counts differ": (lambda lab: {"test_fmri": lab["test_fmri"][..., :-1]}, "119 voxels"),
    "test images != test fMRI rows": (lambda lab: {"test_images": lab["test_images"][:9]},
                                      "10 test images x 4 repeats but test_images holds 9"),
    "mismatched repeats": (lambda lab: {"test_fmri": lab["test_fmri"].reshape(40, V),
                                        "test_image_index": np.r_[np.repeat(np.arange(10), 4)[:-1], 0]},
                           "same number of repeats; most have 4, these differ: 0 (5), 9 (3)"),
    "2-D test fMRI without index": (lambda lab: {"test_fmri": lab["test_fmri"].reshape(40, V)},
                                    "needs test_image_index"),
    "one image per trial missing": (lambda lab: {"train_image_index": None}, "60 images but train_fmri has 120"),
    "index out of range": (lambda lab: {"train_image_index": lab["train_image_index"] + 1}, "found [1, 60]"),
    "mask of the wrong length": (lambda lab: {"rois": {"V1": np.ones(V + 1, bool)}},
                                 "rois 'V1': expected a mask over the 120 voxels"),
    "unknown ROI name": (lambda lab: {"rois": {"MT": np.ones(V, bool)}}, "unknown ROI name 'MT'"),
    "empty mask": (lambda lab: {"rois": {"V1": np.zeros(V, bool)}}, "selects no voxel"),
    "images outside [0, 1]": (lambda lab: {"train_images": lab["train_images"].astype(np.float32)},
                              "expected floats in [0, 1], found ["),
    "RGBA images": (lambda lab: {"test_images": np.zeros((10, 32, 32, 4), np.uint8)}, "drop the alpha channel"),
    "ceiling above 1": (lambda lab: {"noise_ceiling": np.full(V, 2.0)}, "a ceiling in percent: divide by 100"),
    "one repeat, no ceiling": (lambda lab: {"test_fmri": lab["test_fmri"][:, :1]}, "at least 2 repeats"),
    "depth for one split": (lambda lab: {"train_depth": np.zeros((60, 32, 32), np.uint8)},
                            "train_depth: given without test_depth"),
    "resolution": (lambda lab: {"resolution": 30}, "resolution 30 must be a multiple of 8"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arrays_are_refused_in_one_line(lab, tmp_path, case):
    change, fragment = BAD[case]
    with pytest.raises(UserError) as e:
        write_subject(tmp_path / "out", 1, **_bad(lab, **change(lab)))
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "out").exists()                            # checked before anything is written


def test_bad_files_are_one_line_naming_the_flag(lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_as_the_doc_says(lab, tmp_path)
    np.save("nan.npy", _with(lab["train_fmri"], (0, 0), np.nan))
    np.save("short_mask.npy", np.ones(V - 1, bool))
    (tmp_path / "fmri.csv").write_text("1,2\n")
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "v1.nii.gz")
    base = ["import-arrays", "--train-fmri", "train_fmri.npy", "--train-images", "train_images",
            "--train-image-index", "train_image_index.npy", "--test-fmri", "test_fmri.npy", "--test-images",
            "test_images", "--out", "out", "--resolution", "32"]

    def swap(flag, value):
        args = list(base)
        if flag in args:
            args[args.index(flag) + 1] = value
            return args
        return args + [flag, value]
    cases = [(swap("--train-fmri", "nan.npy"), "--train-fmri nan.npy: training fMRI (trials, voxels) has 1 non-finite"),
             (swap("--train-fmri", "missing.npy"), "--train-fmri missing.npy: no such file"),
             (swap("--train-fmri", "fmri.csv"), "expected a .npy file"),
             (swap("--roi-mask", "V1=short_mask.npy"), "--roi-mask V1=short_mask.npy: expected a mask over the 120"),
             (swap("--roi-mask", "V1=v1.nii.gz"), "needs --voxel-volume"),
             (swap("--roi-mask", "V1"), "expected NAME=FILE"),
             (swap("--test-images", "train_images"), "--test-fmri test_fmri.npy: 10 test images x 4 repeats but "
                                                     "--test-images train_images holds 60"),
             (swap("--resolution", "36"), "--resolution 36 must be a multiple of 8")]
    for args, fragment in cases:
        result, output = cli(args)
        assert result.exit_code == 2, output
        assert output.startswith("error:") and fragment in " ".join(output.split()), output
        assert len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
        assert not (tmp_path / "out").exists(), output
    help_text = CliRunner().invoke(app, ["import-arrays", "--help"], terminal_width=200).output
    for flag in ("--train-fmri", "--test-image-index", "--roi-mask", "--voxel-volume", "--noise-ceiling"):
        assert flag in help_text


def test_write_subject_is_importable_without_torch():
    code = "import sys, brainrecon.data as d; d.write_subject; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
