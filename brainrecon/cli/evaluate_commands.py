"""The evaluation commands: reconstruct, evaluate, classify, and the tables they print."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from brainrecon.cli.common import (DataDir, UserError, _choice, _data_dir, _device, _integers, app, err_console,
                                   out_console, user_errors)
from brainrecon.config import ALL_METRICS


@app.command()
@user_errors
def reconstruct(
    run: Path = typer.Argument(..., help="train-decoder --out folder."),
    split: str = typer.Option("test", "--split", help="test | train"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/reconstruct_<split>, with "
                                       "--fmri RUN/decoded_<file>)."),
    data_dir: Optional[Path] = DataDir,
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    fmri: Optional[Path] = typer.Option(None, "--fmri", help="Decode this array instead of a split: .npy, or .npz "
                                        "(--key names the array), shaped (N, V) over the run's ROI or over the "
                                        "subject file's whole voxel axis (the run's ROI mask is applied)."),
    key: Optional[str] = typer.Option(None, "--key", help="With --fmri FILE.npz: the array to decode."),
):
    """Decode fMRI into images/depth: the run's test (or train) split, or any array with --fmri; arrays, PNGs and a
    gallery."""
    _choice("--split", split, ("test", "train"))
    _device("--device", device)
    if fmri is not None:
        from brainrecon.reconstruct import decode_fmri
        path = decode_fmri(run, fmri, key, out, data_dir, device)
        out_console.print(f"decoded: {path}\ngrid: {path.parent / 'grid.png'}")
        return
    from brainrecon.reconstruct import reconstruct as run_reconstruct
    path = run_reconstruct(run, split, out, data_dir, device)
    out_console.print(f"reconstructions: {path}\ngallery: {path.parent / 'gallery.png'}")


@app.command()
@user_errors
def evaluate(
    recons: List[Path] = typer.Argument(..., help="reconstructions.npz files or run folders."),
    ways: str = typer.Option("2,5,10", "--ways", help="n of the n-way identification, comma separated."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help=f"{', '.join(ALL_METRICS)} (repeatable; "
                                               "default: all available)."),
    repeats: int = typer.Option(100, "--repeats", help="Random draws of the n - 1 distractors per image."),
    mode: str = typer.Option("both", "--mode", help="percent (% correct) | rank | both"),
    seed: int = typer.Option(0, "--seed", help="Seed of the distractor draws and the bootstrap."),
    distractors: str = typer.Option("test", "--distractors", help="test | imagenet | DIR"),
    pool_size: int = typer.Option(1000, "--pool-size", help="Distractor images drawn from imagenet or DIR."),
    exhaustive: bool = typer.Option(False, "--exhaustive", help="Every other image as a distractor in turn (2-way "
                                    "only), no random draws."),
    out: Path = typer.Option(Path("runs/evaluation"), "--out", help="Folder for the tables and plots."),
    data_dir: Optional[Path] = DataDir,
    suite: Optional[str] = typer.Option(None, "--suite", help="nsd: also the eight metrics of the NSD papers "
                                        "(PixCorr, SSIM, AlexNet(2), AlexNet(5), InceptionV3, CLIP, EffNet-B, "
                                        "SwAV) in their published layout; needs pip install 'brainrecon\\[nsd]'."),
    download: bool = typer.Option(True, "--download/--no-download", help="With --suite nsd: fetch the metric "
                                  "networks' weights on first use (else only cached weights; the rest unavailable)."),
    device: str = typer.Option("auto", "--device", help="Where the --suite and MiDaS networks run."),
    depth_from_rgb: bool = typer.Option(False, "--depth-from-rgb", help="Also score MiDaS's depth of each rgbd run's "
                                        "RGB reconstructions (a row `<run> MiDaS(RGB)`) against the same ground "
                                        "truth, and compare it with the run's directly decoded depth."),
    midas: str = typer.Option("small", "--midas", help="With --depth-from-rgb: small (as the original) | large."),
):
    """n-way identification (% correct and rank) with bootstrap CIs, tables and a plot."""
    _choice("--mode", mode, ("percent", "rank", "both"))
    _choice("--midas", midas, ("small", "large"))
    _choice("--suite", suite, ("nsd",))
    _device("--device", device)
    root = _data_dir(data_dir)
    from brainrecon.evaluation.compare import compare_runs
    from brainrecon.evaluation.identification import EvalOptions, evaluate_runs, write_outputs
    from brainrecon.reconstruct import load_reconstructions
    ways_t = _integers("--ways", ways)
    opts = EvalOptions(ways=ways_t, metrics=tuple(metric or ()), repeats=repeats, mode=mode, seed=seed,
                       distractors=distractors, pool_size=pool_size, exhaustive=exhaustive)
    if suite not in (None, "nsd"):
        raise UserError(f"--suite {suite!r}: the one suite is nsd")
    from brainrecon.reconstruct import distinct_runs, with_ceilings
    loaded = distinct_runs([load_reconstructions(p) for p in recons])
    if depth_from_rgb:
        from brainrecon.evaluation.depth_from_rgb import depth_from_rgb as midas_rows
        from brainrecon.train.core import pick_device
        loaded = midas_rows(loaded, midas, root, pick_device(device),
                            say=lambda s: err_console.print(s, highlight=False))
    loaded = with_ceilings(loaded)
    records, depth = evaluate_runs(loaded, opts, root)
    comparisons = compare_runs(records, seed) if len({r["run"] for r in records}) > 1 else []
    suite_rows = []
    if suite == "nsd":
        from brainrecon.evaluation.nsd_suite import evaluate_suite
        from brainrecon.train.core import pick_device
        suite_rows = evaluate_suite(loaded, pick_device(device), offline=not download,
                                    say=lambda s: err_console.print(f"--suite nsd: {s}", highlight=False))
    paths = write_outputs(records, depth, out, comparisons, suite_rows)
    print_tables(records, depth)
    print_comparisons(comparisons)
    print_suite(suite_rows)
    out_console.print(f"tables: {paths['csv']}  plot: {paths['png']}" +
                      (f"  paired comparisons: {paths['comparisons_csv']}" if comparisons else "") +
                      (f"  NSD suite: {paths['nsd_suite_csv']}" if suite_rows else ""))


def print_suite(rows: list) -> None:
    """The NSD papers' table: a line per run; two-way identification in %, EffNet-B and SwAV distances (lower is
    better); unavailable metrics say why below the table."""
    if not rows:
        return
    from brainrecon.evaluation.nsd_suite import COLUMNS, LOWER_IS_BETTER, table
    t = Table(title="NSD metric suite (exhaustive two-way identification in %; EffNet-B and SwAV: correlation "
                    "distance)", title_justify="left")
    t.add_column("run", no_wrap=True)
    for c in COLUMNS:
        t.add_column(f"{c} {'↓' if c in LOWER_IS_BETTER else '↑'}", justify="right", no_wrap=True)
    for line in table(rows):
        t.add_row(line["run"], *(line.get(c, "") for c in COLUMNS))
    out_console.print(t)
    reasons = {r["metric"]: r["unavailable"] for r in rows if r["unavailable"]}
    for metric, reason in reasons.items():
        out_console.print(f"  {metric}: unavailable: {reason}", highlight=False)


def print_comparisons(rows: list) -> None:
    """The paired comparisons at the largest n (all of them are in comparisons.csv)."""
    if not rows:
        return
    from brainrecon.evaluation.compare import N_BOOT, N_PERM
    top = max(r["ways"] for r in rows)
    t = Table(title=f"paired comparisons, {top}-way: per-image difference a - b on the same images and distractors; "
                    f"paired bootstrap 95% CI ({N_BOOT} resamples), two-sided sign-flip p ({N_PERM} flips), seed "
                    f"{rows[0]['seed']}", title_justify="left")
    for c in ("a - b", "chan", "metric", "mode", "diff", "95% CI", "p", "a better", "b better"):
        t.add_column(c, no_wrap=True, justify="left" if c in ("a - b", "chan", "metric", "mode") else "right")
    for r in rows:
        if r["ways"] == top:
            t.add_row(f"{r['run_a']} - {r['run_b']}", r["channel"], r["metric"], r["mode"], f"{r['diff']:+.3f}",
                      f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}", f"{r['p_value']:.3g}", str(r["a_better"]),
                      str(r["b_better"]))
    out_console.print(t)


def print_tables(records: list, depth: list) -> None:
    runs = sorted({(r["run"], r["subject"], r["modality"]) for r in records})
    distractors = sorted({r["distractors"] for r in records})
    t = Table(title=f"n-way identification; distractors: {', '.join(distractors)}; mean and 95% bootstrap CI over "
                    "images", title_justify="left")
    for c in ("run", "chan", "metric", "ways", "mode", "mean", "95% CI", "chance"):
        t.add_column(c, justify="right" if c in ("ways", "mean", "95% CI", "chance") else "left", no_wrap=True)
    for r in records:
        t.add_row(r["run"], r["channel"], r["metric"], str(r["ways"]), r["mode"], f"{r['mean']:.3f}",
                  f"{r['ci_low']:.2f}-{r['ci_high']:.2f}", f"{r['chance']:.2f}")
    out_console.print(t)
    out_console.print("runs: " + "; ".join(f"{run} (subject {s}, {m})" for run, s, m in runs))
    if depth:
        d = Table(title="depth errors after per-image median scaling (relative inverse depth)", title_justify="left")
        for c in ("run", "metric", "mean", "95% CI"):
            d.add_column(c, no_wrap=True)
        for r in depth:
            d.add_row(r["run"], r["metric"], f"{r['mean']:.4f}", f"{r['ci_low']:.4f}-{r['ci_high']:.4f}")
        out_console.print(d)


@app.command()
@user_errors
def classify(
    recons: List[Path] = typer.Argument(..., help="reconstructions.npz files, run folders, or plain image arrays "
                                        "(.npy, or .npz with one array; (N, H, W, 3) uint8 or floats in [0, 1])."),
    class_images: Path = typer.Option(..., "--class-images", help="ImageNet-style tree, one folder per class: the "
                                      "class pool and its prototypes (for GOD: its 50 test synsets beside the "
                                      "ILSVRC-2012 classes)."),
    test_classes: Optional[Path] = typer.Option(None, "--test-classes", help="One class folder name per line (or "
                                                "`class,file name`), in test-image order (default: GOD's 50 test "
                                                "images)."),
    features: str = typer.Option("alexnet", "--features", help="alexnet (the paper's: torchvision's ImageNet AlexNet "
                                 "conv4, fetched on first use) | effnet-lite0 (shipped; a stand-in)."),
    per_class: int = typer.Option(100, "--per-class", help="Images per class prototype (at most)."),
    ways: str = typer.Option("50,100,500,1000", "--ways", help="Classes per trial (n), comma separated."),
    top: str = typer.Option("1,5", "--top", help="Top-k accuracies, comma separated."),
    trials: int = typer.Option(1000, "--trials", help="Random trials per test image and n."),
    seed: int = typer.Option(0, "--seed", help="Seed of the trial draws and the bootstrap."),
    out: Path = typer.Option(Path("runs/classification"), "--out", help="Folder for the tables and the plot."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder for the cached prototypes (default: the data "
                                         "folder's cache/)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
):
    """Large-scale semantic classification of reconstructions (n-way among ImageNet classes, the NeuroImage 2022
    protocol): top-k accuracy vs n with bootstrap CIs, paired comparisons, a plot."""
    from brainrecon.evaluation.classify import FEATURES
    _choice("--features", features, FEATURES)
    _device("--device", device)
    ways_t, tops_t = _integers("--ways", ways), _integers("--top", top)
    from rich.progress import Progress
    from brainrecon.evaluation.classify import ClassifyOptions
    from brainrecon.evaluation.classify_runs import classify_runs, paired, write_outputs
    from brainrecon.train.core import pick_device
    opts = ClassifyOptions(ways=ways_t, tops=tops_t, trials=trials, seed=seed, per_class=per_class)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("class prototypes", total=None)
        rows = classify_runs(recons, class_images, opts, features, test_classes, cache, pick_device(device),
                             say=lambda s: err_console.print(s, highlight=False),
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    comparisons = paired(rows, seed)
    paths = write_outputs(rows, comparisons, out)
    t = Table(title=f"semantic classification ({features}); mean over images of each image's accuracy over {trials} "
                    "trials, 95% bootstrap CI", title_justify="left")
    for c in ("run", "n", "top", "mean", "95% CI", "chance", "images"):
        t.add_column(c, justify="left" if c == "run" else "right", no_wrap=True)
    for r in rows:
        t.add_row(r["run"], str(r["ways"]), str(r["top"]), f"{r['mean']:.3f}", f"{r['ci_low']:.3f}-{r['ci_high']:.3f}",
                  f"{r['chance']:.3f}", str(r["images"]))
    out_console.print(t)
    for c in comparisons:
        out_console.print(f"  {c['run_a']} - {c['run_b']}, {c['ways']}-way top-{c['top']}: {c['diff']:+.3f} "
                          f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], p = {c['p_value']:.3g}", highlight=False)
    out_console.print(f"tables: {paths['csv']}  plot: {paths['png']}")
