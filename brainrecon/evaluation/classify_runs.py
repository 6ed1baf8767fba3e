"""`brainrecon classify`: reconstruction files (or plain image arrays) in, the classification tables, paired
comparisons and a plot out. The protocol itself is in classify.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from brainrecon.atomic import write_text_atomic
from brainrecon.data.imagenet import class_of, exclusion_classes, god_test_list, pool_files
from brainrecon.errors import UserError
from brainrecon.evaluation.classify import (
    STAND_IN,
    ClassifyOptions,
    class_files,
    extract,
    feature_network,
    prepare,
    prototypes,
    score,
    shared_images,
)

COLUMNS = ("run", "features", "ways", "top", "mean", "ci_low", "ci_high", "chance", "trials", "images", "size", "jpeg",
           "split", "test_classes_seen", "pool_test_classes", "prototype_overlap")


def load_images(path: Path) -> dict:
    """{run, images uint8 (N, H, W, 3), split, record} from a reconstructions.npz / run folder (evaluate's inputs) or
    a plain array: .npy, or .npz with one array; (N, H, W, 3) uint8, or floats in [0, 1]. `record` (runs only): the
    run's config (YAML) and unpaired-pool record as reconstruct wrote them."""
    from brainrecon.reconstruct import NPZ, load_reconstructions
    path = Path(path)
    if path.is_dir() or (path.suffix == ".npz" and _has_key(path, "reconstructions")):
        rec = load_reconstructions(path)
        images = rec["reconstructions"]
        if images.shape[-1] not in (3, 4):
            raise UserError(f"{path}: a {str(rec['modality'])} run has no RGB to classify")
        where = Path(rec["path"])
        split = str(rec["split"]) if "split" in rec else (
            "train" if where.parent.name == "reconstruct_train" else "unrecorded")
        record = {k: str(rec[k]) for k in ("run_config", "unpaired_pool") if k in rec}
        return {"run": str(rec["run"]), "images": images[..., :3], "split": split, "record": record}
    if not path.is_file():
        raise UserError(f"{path}: no such file or run folder (give {NPZ} files, run folders or image arrays)")
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.ndarray):
        with data:
            if len(data.files) != 1:
                raise UserError(f"{path}: holds {', '.join(data.files)}; a plain image array file must hold one")
            data = data[data.files[0]]
    if data.ndim != 4 or data.shape[-1] != 3:
        raise UserError(f"{path}: an array of shape {data.shape}; expected (N, H, W, 3) images")
    if data.shape[1] != data.shape[2]:
        raise UserError(f"{path}: images of {data.shape[1]} x {data.shape[2]} px; classify takes square images "
                        "(crop or resize them to a square first)")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.floating) or data.min() < 0 or data.max() > 1:
            raise UserError(f"{path}: {data.dtype} values; expected uint8, or floats in [0, 1]")
        data = np.round(data * 255).astype(np.uint8)
    return {"run": path.stem, "images": data, "split": "unknown (image array)", "record": None}


def _has_key(path: Path, key: str) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return key in z.files
    except Exception:  # noqa: BLE001 - unreadable: load_reconstructions says why
        return True


def test_classes(file: Path | None, n_images: int) -> tuple[list[str], set[str]]:
    """(class folder name per test image, the test images' file names to leave out of the prototypes). From FILE (one
    `class` or `class,file name` per line, in test-image order), else the GOD test list that ships with brainrecon."""
    if file is None:
        pairs = god_test_list()
        classes, names = [c for c, _ in pairs], {n for _, n in pairs}
        where = "the GOD test-image list (50 images)"
    else:
        if not Path(file).is_file():
            raise UserError(f"--test-classes {file}: no such file")
        classes, names, where = [], set(), str(file)
        for line in (s.strip() for s in Path(file).read_text().splitlines()):
            if line:
                parts = [p.strip().strip('"') for p in line.split(",")]
                classes.append(parts[0])
                names.update(parts[1:2])
    if len(classes) != n_images:
        raise UserError(f"{where} names {len(classes)} test images but the reconstructions hold {n_images}; give "
                        f"--test-classes FILE (one class folder name per line, in test-image order)")
    return classes, names


def read_class_list(file: Path | None) -> list[str] | None:
    if file is None:
        return None
    if not Path(file).is_file():
        raise UserError(f"--class-list {file}: no such file")
    names = [s.strip() for s in Path(file).read_text().splitlines() if s.strip()]
    if not names:
        raise UserError(f"--class-list {file}: names no class (one class folder name per line)")
    return list(dict.fromkeys(names))


def training_pool(run: dict, classes: list[str]) -> tuple[str, list[Path] | None]:
    """(what the run's unpaired training images held of the test classes, in words; the pool's files when they can
    be listed). For an image array, or reconstructions written before the record, it cannot be known and says so."""
    record = run["record"]
    if record is None:
        return "unknown: an image array records no training data", None
    try:
        cfg = yaml.safe_load(record.get("run_config", "")) or {}
        pool = json.loads(record.get("unpaired_pool", '"unrecorded"'))
    except (yaml.YAMLError, ValueError):
        cfg, pool = {}, "unrecorded"
    weights = (cfg.get("loss") or {}).get("weights", [1, 1, 0])
    if cfg and (not (cfg.get("train") or {}).get("self_supervision", True) or weights[1] == 0):
        return "none: the run trained on no unpaired images", []
    if not isinstance(pool, dict):
        return ("unknown: the reconstructions do not record the run's unpaired images (run `brainrecon reconstruct` "
                "again)"), None
    spec = pool.get("exclude_classes", "none")
    wanted = set(classes)
    root = Path(pool.get("root", ""))
    try:
        files, _, _ = pool_files(root, None, int((cfg.get("data") or {}).get("max_unpaired", 0)),
                                 exclusion_classes(spec))
    except (UserError, OSError):
        files = None
    if files is not None:
        held = [class_of(f, root) for f in files if class_of(f, root) in wanted]
        n_cls, n_img, source = len(set(held)), len(held), ""
    elif wanted <= {c for c, _ in god_test_list()}:
        n_cls, n_img = pool.get("god_test_classes_held", 0), pool.get("god_test_images_held", 0)
        source = f", from the run's record ({root} not found)"
    else:
        return f"unknown: the run's unpaired images ({root}) are not found", None
    removed = (f"; data.exclude_classes={spec} removed {pool.get('classes_removed', 0)} classes, "
               f"{pool.get('images_removed', 0)} images" if spec != "none" else "; data.exclude_classes=none")
    if n_cls:
        return (f"HELD {n_cls} of the {len(wanted)} test classes ({n_img} images): not never-seen"
                f"{removed}{source}"), files
    return f"none of the {len(wanted)} test classes{removed}{source}", files


def prototype_overlap(class_files_: dict[str, list[Path]], pool: list[Path] | None, run: str,
                      allow: bool) -> str:
    """Refuse (or, allowed, describe) prototype images that are among the run's unpaired training images."""
    if pool is None:
        return "unknown (the run's unpaired images cannot be listed)"
    shared = shared_images([p for v in class_files_.values() for p in v], pool)
    if not shared:
        return "none"
    what = (f"{len(shared)} prototype image(s) are among {run}'s unpaired training images (e.g. {shared[0][0]} = "
            f"{shared[0][1]})")
    if not allow:
        raise UserError(f"--class-images: {what}; build the prototype tree from other images (docs/metrics.md: 100 "
                        "ILSVRC train images per class), or pass --allow-overlap to score it anyway, labelled")
    return f"SHARED {len(shared)} image(s) with the unpaired training images (--allow-overlap)"


def classify_runs(paths: list[Path], class_images: Path, opts: ClassifyOptions, features: str = "alexnet",
                  test_classes_file: Path | None = None, cache_dir: Path | None = None, device="cpu",
                  say: Callable[[str], None] = print, progress: Callable[[int, int], None] | None = None,
                  class_list: Path | None = None, allow_overlap: bool = False) -> list:
    """Rows (with per-image accuracies) for every run; every run must hold the same number of test images."""
    runs = [load_images(p) for p in paths]
    sizes = {r["images"].shape[:3] for r in runs}
    if len(sizes) != 1:
        raise UserError(f"the inputs hold different test sets ({', '.join(str(s) for s in sizes)}); classify runs of "
                        "the same test images together")
    for r in runs:
        if r["split"] == "train" and test_classes_file is None:
            raise UserError(f"{r['run']}: reconstructions of the training split, whose classes are not the test "
                            "classes; classify the test split (`brainrecon reconstruct RUN`), or give --test-classes "
                            "FILE naming the training images' classes")
    n, native = runs[0]["images"].shape[0], runs[0]["images"].shape[1]
    side = opts.size or native
    classes, leave_out = test_classes(test_classes_file, n)
    files = class_files(class_images, classes, opts.per_class, leave_out, read_class_list(class_list), say)
    labels = {}
    for r in runs:
        held, pool = training_pool(r, classes)
        labels[r["run"]] = {"split": r["split"], "size": side, "jpeg": opts.jpeg or "none",
                            "test_classes_seen": seen_in_training({"pool_test_classes": held}),
                            "pool_test_classes": held,
                            "prototype_overlap": prototype_overlap(files, pool, r["run"], allow_overlap)
                            if r["record"] is not None else "unknown (image array)"}
        say(f"{r['run']}: unpaired training images: {held}")
    if features in STAND_IN:
        say(f"features: {features}: {STAND_IN[features]}")
    net = feature_network(features, device)
    from brainrecon.data.layout import data_dir
    names, protos, cached = prototypes(files, net, features, side, cache_dir or data_dir(None) / "cache", progress)
    counts = [len(v) for v in files.values()]
    say(f"class pool: {len(names)} classes from {class_images}, {min(counts)}-{max(counts)} images each (up to "
        f"{opts.per_class}){' (prototypes from the cache)' if cached else ''}; images at {side} px"
        f"{f', JPEG quality {opts.jpeg} round trip' if opts.jpeg else ''}")
    true = np.array([names.index(c) for c in classes])
    rows = []
    for r in runs:
        feats = extract(net, prepare(r["images"], side, opts.jpeg))
        rows += score(r["run"], feats, protos, true, opts, features, labels[r["run"]])
    return rows


def seen_in_training(row: dict) -> str:
    """The table's short answer to "did the run's unpaired training images hold test classes?": yes, no, unknown."""
    text = row["pool_test_classes"]
    return "YES" if text.startswith("HELD") else "unknown" if text.startswith("unknown") else "no"


def run_notes(rows: list) -> list[str]:
    """One line per run under the table: its split, its unpaired training images against the test classes, and
    whether its prototypes share images with them."""
    out = []
    for run in dict.fromkeys(r["run"] for r in rows):
        r = next(x for x in rows if x["run"] == run)
        never = {"YES": "NOT never-seen", "no": "never seen in training", "unknown": "never-seen unknown"}
        out.append(f"  {run}: split {r['split']}; test classes {never[seen_in_training(r)]}: unpaired training "
                   f"images: {r['pool_test_classes']}; prototypes shared with them: {r['prototype_overlap']}")
    return out


def paired(rows: list, seed: int = 0) -> list[dict]:
    """Every pair of runs, per (n, k): the paired difference of per-image accuracies (as evaluate's comparisons)."""
    from itertools import combinations

    from brainrecon.evaluation.compare import paired_difference
    runs = list(dict.fromkeys(r["run"] for r in rows))
    by = {(r["run"], r["ways"], r["top"]): r for r in rows}
    out = []
    for a, b in combinations(runs, 2):
        for (run, ways, top), ra in by.items():
            if run == a and (b, ways, top) in by:
                stats = paired_difference(ra["per_image"], by[(b, ways, top)]["per_image"], seed)
                out.append({"run_a": a, "run_b": b, "ways": ways, "top": top, "mean_a": ra["mean"],
                            "mean_b": by[(b, ways, top)]["mean"], **stats})
    return out


def write_outputs(rows: list, comparisons: list, out: Path) -> dict:
    out = Path(out)
    table = "".join(_csv([{k: r[k] for k in COLUMNS} for r in rows], COLUMNS))
    write_text_atomic(out / "classification.csv", table)
    write_text_atomic(out / "classification.json", json.dumps(
        [{**{k: r[k] for k in COLUMNS}, "per_image": r["per_image"].tolist()} for r in rows], indent=1))
    paths = {"csv": out / "classification.csv", "json": out / "classification.json",
             "png": out / "classification.png"}
    if comparisons:
        write_text_atomic(out / "classification_comparisons.csv", "".join(_csv(comparisons, list(comparisons[0]))))
        paths["comparisons_csv"] = out / "classification_comparisons.csv"
    _plot(rows, paths["png"])
    return paths


def _csv(rows: list[dict], columns) -> list[str]:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return [buf.getvalue()]


def _plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from brainrecon.viz import _save_fig
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, run in enumerate(dict.fromkeys(r["run"] for r in rows)):
        for top, style in zip(sorted({r["top"] for r in rows}), ("-", "--", ":", "-.")):
            mine = sorted((r for r in rows if r["run"] == run and r["top"] == top), key=lambda r: r["ways"])
            x = [r["ways"] for r in mine]
            ax.errorbar(x, [r["mean"] for r in mine], yerr=[[r["mean"] - r["ci_low"] for r in mine],
                                                             [r["ci_high"] - r["mean"] for r in mine]],
                        fmt="o" + style, color=f"C{i}", capsize=2, label=f"{run} top-{top}")
            ax.plot(x, [r["chance"] for r in mine], style, color="grey", lw=1)
    ax.set(xscale="log", xlabel="n (classes in a trial)", ylabel="accuracy (mean over images, 95% CI)",
           title=f"semantic classification ({rows[0]['features']}); grey: chance")
    ax.legend(fontsize=7)
    _save_fig(fig, path)
