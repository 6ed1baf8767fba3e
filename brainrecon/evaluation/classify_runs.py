"""`brainrecon classify`: reconstruction files (or plain image arrays) in, the classification tables, paired
comparisons and a plot out. The protocol itself is in classify.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np

from brainrecon.atomic import write_text_atomic
from brainrecon.errors import UserError
from brainrecon.evaluation.classify import (STAND_IN, ClassifyOptions, class_files, extract, feature_network,
                                            prototypes, score)

COLUMNS = ("run", "features", "ways", "top", "mean", "ci_low", "ci_high", "chance", "trials", "images")
GOD_TEST_LIST = "sources/god/imageID_test.csv"


def load_images(path: Path) -> dict:
    """{run, images uint8 (N, H, W, 3)} from a reconstructions.npz / run folder (evaluate's inputs) or a plain array:
    .npy, or .npz with one array; (N, H, W, 3) uint8, or floats in [0, 1]."""
    from brainrecon.reconstruct import NPZ, load_reconstructions
    path = Path(path)
    if path.is_dir() or (path.suffix == ".npz" and _has_key(path, "reconstructions")):
        rec = load_reconstructions(path)
        images = rec["reconstructions"]
        if images.shape[-1] not in (3, 4):
            raise UserError(f"{path}: a {str(rec['modality'])} run has no RGB to classify")
        return {"run": str(rec["run"]), "images": images[..., :3]}
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
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.floating) or data.min() < 0 or data.max() > 1:
            raise UserError(f"{path}: {data.dtype} values; expected uint8, or floats in [0, 1]")
        data = np.round(data * 255).astype(np.uint8)
    return {"run": path.stem, "images": data}


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
        from importlib import resources
        text = resources.files("brainrecon").joinpath(GOD_TEST_LIST).read_text()
        where = "the GOD test-image list (50 images)"
    else:
        if not Path(file).is_file():
            raise UserError(f"--test-classes {file}: no such file")
        text, where = Path(file).read_text(), str(file)
    classes, names = [], set()
    for line in (s.strip() for s in text.splitlines()):
        if not line:
            continue
        parts = [p.strip().strip('"') for p in line.split(",")]
        if file is None:       # GOD: `1443537.022563,"n01443537_22563.JPEG"`
            classes.append(parts[1].split("_")[0])
            names.add(parts[1])
        else:
            classes.append(parts[0])
            names.update(parts[1:2])
    if len(classes) != n_images:
        raise UserError(f"{where} names {len(classes)} test images but the reconstructions hold {n_images}; give "
                        f"--test-classes FILE (one class folder name per line, in test-image order)")
    return classes, names


def classify_runs(paths: list[Path], class_images: Path, opts: ClassifyOptions, features: str = "alexnet",
                  test_classes_file: Path | None = None, cache_dir: Path | None = None, device="cpu",
                  say: Callable[[str], None] = print, progress: Callable[[int, int], None] | None = None) -> list:
    """Rows (with per-image accuracies) for every run; every run must hold the same number of test images."""
    runs = [load_images(p) for p in paths]
    sizes = {r["images"].shape[:3] for r in runs}
    if len(sizes) != 1:
        raise UserError(f"the inputs hold different test sets ({', '.join(str(s) for s in sizes)}); classify runs of "
                        "the same test images together")
    n, side = runs[0]["images"].shape[0], runs[0]["images"].shape[1]
    classes, leave_out = test_classes(test_classes_file, n)
    files = class_files(class_images, classes, opts.per_class, leave_out)
    if features in STAND_IN:
        say(f"features: {features}: {STAND_IN[features]}")
    net = feature_network(features, device)
    from brainrecon.data.layout import data_dir
    names, protos, cached = prototypes(files, net, features, side, cache_dir or data_dir(None) / "cache", progress)
    counts = [len(v) for v in files.values()]
    say(f"class pool: {len(names)} classes from {class_images}, {min(counts)}-{max(counts)} images each (up to "
        f"{opts.per_class}){' (prototypes from the cache)' if cached else ''}")
    true = np.array([names.index(c) for c in classes])
    rows = []
    for r in runs:
        rows += score(r["run"], extract(net, r["images"]), protos, true, opts, features)
    return rows


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
