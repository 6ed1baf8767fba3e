"""The papers' classification protocol beyond the scoring itself: the GOD test synsets out of the unpaired pool (and
`classify` saying whether a run's pool held them), classification at 112 px, prototype trees that share images with
the training pool refused, the stand-in tap, and the smaller input checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from brainrecon.config import load_config
from brainrecon.data import imagenet, layout
from brainrecon.data.datasets import load_unpaired_images, unpaired_pool
from brainrecon.errors import UserError
from brainrecon.evaluation import classify
from brainrecon.evaluation.classify import ClassifyOptions, class_files, effnet_tap, extract, prepare
from brainrecon.evaluation.classify_runs import classify_runs, run_notes, write_outputs
from brainrecon.reconstruct import reconstruct
from brainrecon.train.decoder import train_decoder
from tests.conftest import tiny_overrides
from tests.test_decoder import tiny_encoder  # noqa: F401 - the module-scoped fixture

GOD = [c for c, _ in imagenet.god_test_list()]


def test_god_test_list_and_the_presets():
    assert len(GOD) == 50 and len(set(GOD)) == 50 and GOD[0] == "n01443537"
    for modality in ("rgb", "depth", "rgbd"):
        assert load_config("decoder", modality).data.exclude_classes == "god-test"          # the paper presets
        assert load_config("decoder", modality, "demo").data.exclude_classes == "none"      # simulated: no synsets
        assert load_config("decoder", modality, "demo,fast").data.exclude_classes == "none"
    assert imagenet.exclusion_classes("god-test") == GOD and imagenet.exclusion_classes("none") == []
    with pytest.raises(UserError, match="data.exclude_classes='nofile.txt': no such file"):
        imagenet.exclusion_classes("nofile.txt")


@pytest.fixture(scope="module")
def god_root(tiny_subject, tmp_path_factory):
    """The tiny subject with two of its four unpaired classes renamed to GOD test synsets (order kept)."""
    root = tmp_path_factory.mktemp("god_like") / "data"
    shutil.copytree(tiny_subject, root)
    val = layout.unpaired_image_dir(root)
    (val / "n00000002").rename(val / GOD[0])
    (val / "n00000003").rename(val / GOD[1])
    return root


def decoder_cfg(*sets: str):
    over = {"train.epochs": 1, "train.milestones": "[]", "train.warn_seconds": 0, "train.unpaired_image_batch": 8,
            "train.unpaired_fmri_batch": 8, "train.batch_size": 16, "loss.perceptual_width": 0.125,
            "loss.perceptual_net": "vgg16-random", "model.channels": 32}
    return load_config("decoder", "rgbd", "paper", tiny_overrides(**over) + list(sets))


def test_pool_leaves_the_test_synsets_out(god_root):
    cfg = decoder_cfg()
    val = layout.unpaired_image_dir(god_root)
    everything = imagenet.list_images(val)
    held = [p for p in everything if p.parent.name in GOD]
    files, record = unpaired_pool(god_root, cfg.data)
    assert len(held) > 0 and not any(p.parent.name in GOD for p in files)
    assert len(files) == len(everything) - len(held)
    assert record["images_removed"] == len(held) and record["classes_removed"] == 2
    assert record["god_test_classes_held"] == 0 and record["classes_listed"] == 50
    pool = load_unpaired_images(god_root, cfg.data, "rgbd")
    assert len(pool) == len(files)
    keep = [i for i, p in enumerate(everything) if p.parent.name not in GOD]           # depth maps pair by position
    full = load_unpaired_images(god_root, decoder_cfg("data.exclude_classes=none").data, "rgbd")
    assert np.array_equal(pool.numpy(), full.numpy()[keep])


def prototype_tree(root, rng, classes, per_class=3, side=32):
    for c in classes:
        (root / c).mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / c / f"{c}_{k}.JPEG")
    return root


def test_god_preset_run_and_classify_labels(god_root, tiny_encoder, tmp_path, rng):  # noqa: F811
    runs = {}
    for name, sets in (("excluded", ()), ("kept", ("data.exclude_classes=none",))):
        m = train_decoder(decoder_cfg(*sets), god_root, tmp_path / name, encoder_run=tiny_encoder, quiet=True)
        runs[name] = m["unpaired_pool"]
        saved = json.loads((tmp_path / name / "metrics.json").read_text())["unpaired_pool"]
        assert saved == m["unpaired_pool"]
        reconstruct(tmp_path / name, data_dir=god_root)
    assert runs["excluded"]["images_removed"] == 32 and runs["excluded"]["god_test_images_held"] == 0
    assert runs["kept"]["images_removed"] == 0 and runs["kept"]["god_test_classes_held"] == 2
    # 12 test images of 4 classes: the two GOD synsets of the tree, two classes the pool never had
    test_classes = tmp_path / "test_classes.txt"
    names = ["n00000007", "n00000008", GOD[0], GOD[1]] * 3
    test_classes.write_text("\n".join(names) + "\n")
    tree = prototype_tree(tmp_path / "protos", rng, [*dict.fromkeys(names), "n09999999"])
    opts = ClassifyOptions(ways=(2,), tops=(1,), trials=10, per_class=10)
    rows = classify_runs([tmp_path / "excluded", tmp_path / "kept"], tree, opts, "effnet-lite0", test_classes,
                         tmp_path / "cache", say=lambda s: None)
    by = {r["run"]: r for r in rows}
    assert by["excluded"]["test_classes_seen"] == "no" and by["excluded"]["split"] == "test"
    assert by["excluded"]["pool_test_classes"].startswith("none of the 4 test classes; data.exclude_classes=god-test "
                                                          "removed 2 classes, 32 images")
    assert by["kept"]["test_classes_seen"] == "YES"
    assert by["kept"]["pool_test_classes"].startswith("HELD 2 of the 4 test classes (32 images)")
    assert by["kept"]["prototype_overlap"] == "none"
    notes = run_notes(rows)
    assert "NOT never-seen" in notes[1] and "never seen in training" in notes[0]
    paths = write_outputs(rows, [], tmp_path / "out")
    assert "HELD 2 of the 4" in paths["csv"].read_text()
    # a plain array: cannot know
    np.save(tmp_path / "array.npy", np.zeros((12, 32, 32, 3), np.uint8))
    row = classify_runs([tmp_path / "array.npy"], tree, opts, "effnet-lite0", test_classes, tmp_path / "cache",
                        say=lambda s: None)[0]
    assert row["test_classes_seen"] == "unknown" and "image array" in row["pool_test_classes"]

    # prototype trees sharing images with the run's unpaired pool: by name, then by content under another name
    pool_image = next(p for p in imagenet.list_images(layout.unpaired_image_dir(god_root))
                      if p.parent.name == GOD[0])
    same_name = tree / GOD[0] / pool_image.name
    shutil.copy(pool_image, same_name)
    with pytest.raises(UserError, match="1 prototype image.*among kept's unpaired training images.*--allow-overlap"):
        classify_runs([tmp_path / "kept"], tree, opts, "effnet-lite0", test_classes, tmp_path / "cache",
                      say=lambda s: None)
    same_name.rename(tree / GOD[0] / "renamed.JPEG")
    with pytest.raises(UserError, match="renamed.JPEG = .*" + pool_image.name):
        classify_runs([tmp_path / "kept"], tree, opts, "effnet-lite0", test_classes, tmp_path / "cache",
                      say=lambda s: None)
    rows = classify_runs([tmp_path / "kept"], tree, opts, "effnet-lite0", test_classes, tmp_path / "cache",
                         say=lambda s: None, allow_overlap=True)
    assert rows[0]["prototype_overlap"].startswith("SHARED 1 image")

    # the train split: refused against the test classes
    reconstruct(tmp_path / "kept", split="train", data_dir=god_root)
    train_npz = tmp_path / "kept" / "reconstruct_train" / "reconstructions.npz"
    with np.load(train_npz) as z:
        assert str(z["split"]) == "train"
    with pytest.raises(UserError, match="training split"):
        classify_runs([train_npz], tree, opts, "effnet-lite0", None, tmp_path / "cache")


def smooth_images(rng, n, side):
    """Low-frequency colour images (so that resizing changes them little but not nothing)."""
    small = rng.random((n, 6, 6, 3))
    return np.stack([np.asarray(Image.fromarray((s * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC))
                     for s in small])


def test_inputs_are_classified_at_112(rng, tmp_path):
    net = classify.feature_network("effnet-lite0", "cpu")
    for side in (64, 224):
        images = smooth_images(rng, 4, side)
        first = np.stack([np.asarray(Image.fromarray(a).resize((112, 112), Image.BICUBIC)) for a in images])
        assert prepare(images, 112).shape == (4, 112, 112, 3)
        assert np.array_equal(extract(net, prepare(images, 112)), extract(net, first))
        assert np.array_equal(extract(net, prepare(first, 112)), extract(net, first))          # 112: untouched
    native = prepare(images, None)
    assert native is images and extract(net, native).shape[1] != extract(net, first).shape[1]
    jpeg = prepare(images, 112, jpeg=75)
    assert jpeg.shape == first.shape and 0 < np.abs(jpeg.astype(int) - first).mean() < 10
    with pytest.raises(UserError, match="48 x 64 px; classify takes square images"):
        prepare(np.zeros((2, 48, 64, 3), np.uint8), 112)
    np.save(tmp_path / "wide.npy", np.zeros((2, 48, 64, 3), np.uint8))
    with pytest.raises(UserError, match="wide.npy: images of 48 x 64 px"):
        classify_runs([tmp_path / "wide.npy"], tmp_path, ClassifyOptions(), "effnet-lite0")
    with pytest.raises(UserError, match="--size 'big'"):
        classify.parse_size("big")
    assert classify.parse_size("native") is None and classify.parse_size("112") == 112


def test_class_folders_and_cache_key(rng, tmp_path, monkeypatch):
    tree = prototype_tree(tmp_path / "t", rng, ["n00000001", "n00000002", "mytest"])
    prototype_tree(tmp_path / "t", rng, ["misc_downloads"])               # images, but not named like a class
    (tmp_path / "t" / "n00000009").mkdir()                                # named like a class, but empty
    said = []
    files = class_files(tree, ["mytest"], 5, set(), say=said.append)
    assert list(files) == ["mytest", "n00000001", "n00000002"]
    assert any("skipped 1 folder(s) not named like a class (misc_downloads)" in s for s in said)
    listed = tmp_path / "classes.txt"
    listed.write_text("misc_downloads\nn00000002\n")
    assert list(class_files(tree, ["mytest"], 5, set(), class_list=["misc_downloads", "n00000002"])) == [
        "misc_downloads", "n00000002", "mytest"]
    with pytest.raises(UserError, match="--class-list: .* has no folder n12345678"):
        class_files(tree, ["mytest"], 5, set(), class_list=["n12345678"])
    key = classify.listing_key(files, "effnet-lite0", 112)
    monkeypatch.setattr(classify, "PREPROCESS_VERSION", classify.PREPROCESS_VERSION + 1)
    assert classify.listing_key(files, "effnet-lite0", 112) != key


def grating_classes(rng, n_classes, draws, noise, blur):
    """Class c: a grating of its own orientation, spatial frequency and colour; random phase, pixel noise."""
    yy, xx = np.mgrid[:112, :112] / 112
    out = []
    for c in range(n_classes):
        theta, freq = np.pi * (c % 6) / 6 + 0.1 * (c // 6), 2.0 + 1.5 * ((c * 7) % 10)
        hue = 0.5 + 0.4 * np.array([np.cos(2.4 * c), np.cos(2.4 * c + 2.1), np.cos(2.4 * c + 4.2)])
        imgs = []
        for _ in range(draws):
            g = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy)
                                   + rng.uniform(0, np.pi / 3))
            img = hue * g[..., None] + (1 - hue) * (1 - g[..., None]) * 0.3 + rng.normal(0, noise, (112, 112, 3))
            im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
            if blur:
                from PIL import ImageFilter
                im = im.filter(ImageFilter.GaussianBlur(blur))
            imgs.append(np.asarray(im))
        out.append(np.stack(imgs))
    return out


def test_stand_in_tap_beats_the_last_map_on_low_level_classes(rng):
    from brainrecon.correlation import correlation_distance
    from brainrecon.evaluation.classify import trial_accuracy
    from brainrecon.models.effnet import load_effnet_lite0
    n = 40
    protos_imgs = grating_classes(rng, n, 10, 0.1, 0)
    recons = np.concatenate(grating_classes(rng, n, 1, 0.2, 1.5))
    net = load_effnet_lite0()
    acc = {}
    for name, stage in (("stand-in", classify.STAND_IN_STAGE), ("last", None)):
        f = effnet_tap(net, stage)
        protos = np.stack([extract(f, imgs).mean(0) for imgs in protos_imgs])
        dist = correlation_distance(extract(f, recons), protos, cross=True)
        acc[name] = trial_accuracy(dist, np.arange(n), ClassifyOptions(ways=(30,), tops=(1,), trials=100))[(30, 1)]
    assert acc["stand-in"].mean() > acc["last"].mean() + 0.1, {k: v.mean() for k, v in acc.items()}
    assert acc["stand-in"].mean() > 0.8


BAD_FLAGS = [
    (["classify", "{tmp}", "--class-images", "{tmp}", "--size", "big"], "--size 'big'"),
    (["classify", "{tmp}", "--class-images", "{tmp}", "--size", "8"], "--size 8"),
    (["classify", "{tmp}", "--class-images", "{tmp}", "--jpeg", "101"], "--jpeg 101"),
    (["evaluate", "{tmp}", "--depth-from-rgb", "--depth-gt", "gt"], "--depth-gt 'gt'"),
    (["evaluate", "{tmp}", "--depth-from-rgb", "--depth-arm", "x"], "--depth-arm 'x'"),
]


def test_new_flags_refuse_bad_values_in_one_line_before_torch(tmp_path):
    import subprocess
    import sys
    script = ("import json, sys\nfrom brainrecon.cli import main\ncodes = [main(a) for a in json.loads(sys.argv[1])]\n"
              "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))")
    cases = [[a.replace("{tmp}", str(tmp_path)) for a in argv] for argv, _ in BAD_FLAGS]
    result = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [2] * len(cases), "torch": False}, result.stderr
    lines = [s for s in result.stderr.splitlines() if s.startswith("error:")]
    assert len(lines) == len(cases) and all(want in line for (_, want), line in zip(BAD_FLAGS, lines)), lines
