"""The GOD rehearsal world: every file the GOD path reads, in the release's names, keys, dtypes and shapes, scaled
down and made in seconds, to try the real-data commands (fetch-data through classify) without the real data.

    python -m brainrecon.simulation.rehearsal OUT [--torch-home DIR] [--serve]

OUT/release/       the files the download URLs name (served flat by `--serve`, for `fetch-data --base-url`):
                   images_112.npz, rgbd_112_from_224_large_png_uint8.npz, sbj_1..5.npz, imagenet_val.tar.gz,
                   val_depth_on_orig_{small,large}_png_uint8.tar.gz, the five release VGG checkpoints, MiDaS v2.1
                   large/small (model-*.pt) and the public GOD fMRI Subject1..5.h5 (bdpy BData) for convert-god
OUT/god_photos/    the 1,250 stimulus photos under the lab's file names (training/, test/), for convert-god
OUT/imagenet_classes/  a class tree for `classify --class-images`: the 50 GOD test synsets and ILSVRC-2012 classes
OUT/my_images/     a small image tree, for `make-depth --images`
OUT/torch_home/    only with --torch-home: torchvision's VGG16 / VGG19 / AlexNet where its weights API looks

Scaled down: `n_train` training images of 1,200 (the first of GOD's list), the 50 test images with `repeats` of 35
trials each, `n_voxels` voxels, one unpaired image per class over 49 ILSVRC classes (the 20 GOD test synsets that are
ILSVRC classes among them). Images are smooth random patterns; voxels a fixed random linear read-out of each image's
coarse luminance, colour and depth plus noise. EVERY NETWORK HERE HAS RANDOM WEIGHTS and every number a run gives on
this world is meaningless: it checks that the commands run and that files fit together, nothing else.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from brainrecon.config import ROIS
from brainrecon.data import layout, release
from brainrecon.simulation import checkpoints
from brainrecon.sources.bdata import write_bdata
from brainrecon.sources.god import IMAGERY, TEST, TRAIN, zscore_within_runs
from brainrecon.sources.god_lists import carried_lists
from brainrecon.sources.photos import square_resize

ILSVRC_SAMPLE = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041",
                 "n01514668", "n01514859", "n01518878", "n01530575", "n01531178", "n01532829", "n01534433",
                 "n01537544", "n01558993", "n01560419", "n01580077", "n01582220", "n01592084", "n01601694",
                 "n01608432", "n01614925", "n01616318", "n01622779", "n01629819", "n01630670", "n01631663",
                 "n01632458", "n01632777")
"""The first 30 ILSVRC-2012 classes (sorted synset ids)."""
GOD_TEST_IN_ILSVRC = ("n01443537", "n01677366", "n01943899", "n02071294", "n02128385", "n02690373", "n02797295",
                      "n02951358", "n03124170", "n03272010", "n03379051", "n03452741", "n03495258", "n03584254",
                      "n03710193", "n03761084", "n04252077", "n04254777", "n04507155", "n04554684")
"""The 20 GOD test synsets that are ILSVRC-2012 classes (the other 30 come from the full ImageNet)."""
VC_ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA")


@dataclass(frozen=True)
class RehearsalConfig:
    subjects: tuple[int, ...] = (1, 2, 3, 4, 5)
    n_train: int = 40
    """Training images in the release files (the first of GOD's 1,200); one fMRI sample each."""
    n_voxels: int = 300
    repeats: int = 3
    """Trials per test image (GOD: 35)."""
    unpaired_per_class: int = 1
    class_images: int = 2
    """Images per class in imagenet_classes/ (besides the test image of a test synset, which is not there)."""
    photo_size: tuple[int, int] = (24, 32)
    """(height, width) of every photo: small, wider than tall, as ImageNet's mostly are."""
    resolution: int = 112
    seed: int = 0


@dataclass
class World:
    root: Path
    release: Path
    photos: Path
    class_images: Path
    my_images: Path
    torch_home: Path | None
    config: RehearsalConfig


def _pattern(key: str, seed: int, h: int, w: int, channels: int = 3) -> np.ndarray:
    """A smooth random uint8 image, the same for the same key: 4 x 4 noise, bicubic-upsampled."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    small = rng.integers(0, 256, (4, 4, channels), dtype=np.uint8)
    mode = "RGB" if channels == 3 else "L"
    im = Image.fromarray(small if channels == 3 else small[..., 0], mode).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _features(rgb: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per image: 6 x 6 mean luminance, 3 colour means, 3 x 3 mean depth, standardised (N, 48)."""
    n, r = len(rgb), rgb.shape[1]
    lum = rgb.astype(np.float64).mean(3)
    k6, k3 = r // 6, r // 3
    f = [lum[:, :6 * k6, :6 * k6].reshape(n, 6, k6, 6, k6).mean((2, 4)).reshape(n, -1),
         rgb.reshape(n, -1, 3).mean(1),
         depth[:, :3 * k3, :3 * k3, 0].astype(np.float64).reshape(n, 3, k3, 3, k3).mean((2, 4)).reshape(n, -1)]
    f = np.concatenate(f, 1)
    return (f - f.mean(0)) / (f.std(0) + 1e-6)


def _masks(n_voxels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    region = rng.integers(0, len(VC_ROIS), n_voxels)
    outside = rng.random(n_voxels) < 0.05                     # a few voxels outside visual cortex
    masks = {name: (region == i) & ~outside for i, name in enumerate(VC_ROIS)}
    masks["LVC"] = masks["V1"] | masks["V2"] | masks["V3"]
    masks["HVC"] = masks["LOC"] | masks["FFA"] | masks["PPA"]
    masks["VC"] = ~outside
    return {name: masks[name] for name in ROIS}


def _subject(cfg: RehearsalConfig, subject: int, feats_train: np.ndarray, feats_test: np.ndarray, out: Path,
             train_ids: np.ndarray, test_ids: np.ndarray) -> None:
    """sbj_<N>.npz (release) and Subject<N>.h5 (the lab's BData) from one simulated session set."""
    rng = np.random.default_rng([cfg.seed, 100 + subject])
    v = cfg.n_voxels
    weights = rng.standard_normal((feats_train.shape[1], v)) / np.sqrt(feats_train.shape[1])
    masks = _masks(v, rng)
    n_test = len(feats_test)
    test_labels = np.concatenate([rng.permutation(n_test) for _ in range(cfg.repeats)])
    train_raw = feats_train @ weights + rng.standard_normal((len(feats_train), v))
    test_raw = feats_test[test_labels] @ weights + rng.standard_normal((len(test_labels), v))
    train_runs = np.arange(len(train_raw)) // 20 + 1
    test_runs = np.arange(len(test_raw)) // 25 + 1
    train_z, test_z = zscore_within_runs(train_raw, train_runs), zscore_within_runs(test_raw, test_runs)
    grouped = test_z[np.argsort(test_labels, kind="stable")].reshape(n_test, cfg.repeats, v)
    ceiling, snr = release.noise_ceiling_from_repeats(grouped)
    arrays = {"arr_0": train_z.astype(np.float32), "arr_1": test_z.astype(np.float32),
              "arr_2": grouped.mean(1).astype(np.float32), "arr_3": np.arange(len(train_z), dtype=np.int64),
              "arr_4": test_labels.astype(np.int64), "arr_5": ceiling, "arr_6": np.maximum(snr, 1e-3)}
    release.write_subject(layout.subject_file(out, subject), arrays, masks)
    # the lab's BData: the same samples, one-back repeats and imagery samples added (convert-god drops them)
    imagery = rng.standard_normal((6, v))
    rows = [train_z, test_z[:1], test_z, imagery]
    fields = {"DataType": np.concatenate([np.full(len(train_z), TRAIN), [TEST], np.full(len(test_z), TEST),
                                          np.full(6, IMAGERY)]),
              "stimulus_id": np.concatenate([train_ids, test_ids[test_labels[:1]], test_ids[test_labels],
                                             test_ids[:6]]),
              "Run": np.concatenate([train_runs, [test_runs[0]], test_runs + 100, np.ones(6) + 200]),
              "Block": np.concatenate([np.arange(len(train_z)) % 20 + 1, [0], np.arange(len(test_z)) % 25 + 1,
                                       np.arange(6) + 1])}
    fields = {k: np.asarray(a, dtype=np.float64) for k, a in fields.items()}
    fields["Run"][len(train_z)] = 100 + test_runs[0]       # the one-back repeat: same run as the trial it repeats
    voxel_rows = {f"ROI_{name}": m.astype(np.float64) for name, m in masks.items()}
    voxel_rows.update({"voxel_x": np.arange(v) % 7.0, "voxel_y": np.arange(v) // 7 % 9.0,
                       "voxel_z": np.arange(v) // 63.0})
    write_bdata(out / f"Subject{subject}.h5", fields, np.concatenate(rows), voxel_rows)


def make_world(root: Path, cfg: RehearsalConfig = RehearsalConfig(), torch_home: Path | None = None) -> World:
    """Write the rehearsal world under `root` (see the module docstring); returns where everything is."""
    root = Path(root)
    rel, photos, classes, mine = root / "release", root / "god_photos", root / "imagenet_classes", root / "my_images"
    rel.mkdir(parents=True, exist_ok=True)
    h, w = cfg.photo_size
    train_list, test_list = carried_lists()

    # the stimulus photos, and the release's stimulus files made from them as convert-god makes its own
    photo_files, stim = {}, {}
    for split, lst, n in (("training", train_list, len(train_list.names)), ("test", test_list, 50)):
        images, depths = [], []
        for name in lst.names[:n]:
            a = _pattern(name, cfg.seed, h, w)
            photo_files[f"{split}/{name}"] = _jpeg(a)
            with Image.open(io.BytesIO(photo_files[f"{split}/{name}"])) as im:
                images.append(square_resize(im.convert("RGB"), cfg.resolution))
            depths.append(_pattern("depth/" + name, cfg.seed, cfg.resolution, cfg.resolution, 1))
        stim[split] = (np.stack(images), np.stack(depths)[..., None])
    _write_tree(photos, photo_files)
    (train_rgb, train_d), (test_rgb, test_d) = stim["training"], stim["test"]
    train_rgb, train_d = train_rgb[:cfg.n_train], train_d[:cfg.n_train]
    release.write_stimuli(layout.stimuli_file(rel, cfg.resolution), train_rgb, test_rgb)
    release.write_stimuli(layout.rgbd_file(rel, cfg.resolution), np.concatenate([train_rgb, train_d], 3),
                          np.concatenate([test_rgb, test_d], 3))

    feats = _features(np.concatenate([train_rgb, test_rgb]), np.concatenate([train_d, test_d]))
    for subject in cfg.subjects:
        _subject(cfg, subject, feats[:cfg.n_train], feats[cfg.n_train:], rel,
                 np.asarray(train_list.ids[:cfg.n_train]), np.asarray(test_list.ids))

    # the unpaired ImageNet-val tree and its MiDaS depth folders (natural order = ImageFolder order)
    synsets = sorted(set(ILSVRC_SAMPLE) | set(GOD_TEST_IN_ILSVRC))
    val, small, large, k = {}, {}, {}, 0
    for wnid in synsets:
        for _ in range(cfg.unpaired_per_class):
            k += 1
            val[f"val/{wnid}/ILSVRC2012_val_{k:08d}.JPEG"] = _jpeg(_pattern(f"val{k}", cfg.seed, h, w))
    for i, name in enumerate(sorted(val)):
        small[f"val_depth_on_orig_small_png_uint8/{i}.png"] = _png(_pattern(f"ds{name}", cfg.seed, h, w, 1))
        large[f"val_depth_on_orig_large_png_uint8/{i}.png"] = _png(_pattern(f"dl{name}", cfg.seed, h, w, 1))
    _tarball(rel / "imagenet_val.tar.gz", val)
    _tarball(rel / "val_depth_on_orig_small_png_uint8.tar.gz", small)
    _tarball(rel / "val_depth_on_orig_large_png_uint8.tar.gz", large)

    # the networks: release VGGs and MiDaS (flat, as their URLs name them), torchvision's only when asked
    for path in checkpoints.write_release_vggs(rel, cfg.seed) + checkpoints.write_midas(rel, cfg.seed):
        path.replace(rel / path.name)
    (rel / "imagenet_rgbd").rmdir()
    if torch_home is not None:
        checkpoints.write_torchvision(torch_home, cfg.seed)

    # a class tree for classify (the GOD test synsets and ILSVRC classes), and a small tree of one's own images
    test_synsets = sorted({n.split("_")[0] for n in test_list.names})
    tree = {f"{wnid}/{wnid}_{900000 + j}.JPEG": _jpeg(_pattern(f"class/{wnid}/{j}", cfg.seed, h, w))
            for wnid in sorted(set(test_synsets) | set(ILSVRC_SAMPLE)) for j in range(cfg.class_images)}
    _write_tree(classes, tree)
    _write_tree(mine, {f"{c}/{c}_{j}.JPEG": _jpeg(_pattern(f"mine/{c}/{j}", cfg.seed, h, w))
                       for c in ("garden", "street") for j in range(2)})
    return World(root=root, release=rel, photos=photos, class_images=classes, my_images=mine,
                 torch_home=Path(torch_home) if torch_home else None, config=cfg)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m brainrecon.simulation.rehearsal",
                                description="Write the GOD rehearsal world (random networks, scaled-down files).")
    p.add_argument("out", type=Path)
    p.add_argument("--torch-home", type=Path, help="Also place random torchvision VGG16/VGG19/AlexNet weights here "
                   "(then run brainrecon with TORCH_HOME=DIR); never your real torch cache.")
    p.add_argument("--serve", action="store_true", help="Then serve OUT/release on 127.0.0.1 until Ctrl-C.")
    args = p.parse_args(argv)
    world = make_world(args.out, torch_home=args.torch_home)
    print(f"rehearsal world written to {world.root} (RANDOM networks, scaled-down files: numbers are meaningless)")
    if args.serve:
        import time

        from brainrecon.simulation.serve import FileServer
        with FileServer(world.release) as server:
            print(f"serving {world.release} at {server.url}\n  brainrecon fetch-data --base-url {server.url} "
                  "--data-dir DIR ...   (Ctrl-C stops)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
