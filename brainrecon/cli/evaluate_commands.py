"""The evaluation commands: reconstruct, evaluate, classify, and the tables they print."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from brainrecon.cli.common import (
    DataDir,
    DeviceAutoOpt,
    LazyProgress,
    check_choice,
    check_device,
    check_run_folder,
    err_console,
    integer,
    leaves_no_new_folder,
    out_console,
    parse_integers,
    resolve_data_dir,
    user_errors,
)
from brainrecon.cli.tables import FormatOpt, print_comparisons, print_suite, print_tables, show
from brainrecon.config.choices import FEATURE_NETS
from brainrecon.config.networks import features_help
from brainrecon.errors import UserError
from brainrecon.evaluation.paper_tables import FORMATS
from brainrecon.metric_specs import metric_help, metric_spec

GroupSubjectOpt = typer.Option(None, "--subject", metavar="N", parser=integer(1), help="For run folders of a run "
                               "trained on several subjects (--subjects): subject N's reconstructions (the folder "
                               "reconstruct_test_subject<N> that `reconstruct RUN --subject N` writes).")
RunDataDir = typer.Option(None, "--data-dir", metavar="DIR", help="Data folder (default: the one the run was trained "
                          "on, else $BRAINRECON_DATA, else the per-user cache).")


@user_errors
def reconstruct(
    run: str = typer.Argument(..., metavar="RUN", help="A train-decoder --out folder, a `brainrecon export` folder, "
                              "or a Hub id hf://owner/name (downloaded into the Hugging Face cache)."),
    split: str = typer.Option("test", "--split", metavar="SPLIT", help="test or train."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Output folder (default: "
                                       "RUN/reconstruct_<split>, with --fmri RUN/decoded_<file>; required for an "
                                       "exported model or hf:// id, which is never written into)."),
    data_dir: Optional[Path] = RunDataDir,
    device: str = DeviceAutoOpt,
    fmri: Optional[Path] = typer.Option(None, "--fmri", metavar="FILE", help="Decode this array instead of a split: "
                                        ".npy, or .npz (--key names the array), shaped (N, V) over the run's ROI or "
                                        "over the subject file's whole voxel axis (the run's ROI mask is "
                                        "applied)."),
    key: Optional[str] = typer.Option(None, "--key", metavar="NAME", help="With --fmri FILE.npz: the array to "
                                      "decode."),
    subject: Optional[int] = typer.Option(None, "--subject", metavar="N", parser=integer(1), help="For a run trained "
                                          "on several subjects (--subjects): whose fMRI to decode."),
):
    """Decode fMRI into images and depth with a trained decoder: the run's test (or train) split, or any array with
    --fmri; writes the arrays, PNGs and a gallery."""
    check_choice("--split", split, ("test", "train"))
    check_device("--device", device)
    if not run.startswith("hf://"):
        check_run_folder(Path(run))
    if fmri is not None and not fmri.is_file():
        raise UserError(f"--fmri {fmri}: no such file; give a .npy or .npz array of voxel responses")
    if data_dir is not None:
        resolve_data_dir(data_dir)
    if fmri is not None:
        from brainrecon.api import decode_fmri
        with leaves_no_new_folder(out):
            path = decode_fmri(run, fmri, key, out, data_dir, device, subject)
        out_console.print(f"decoded: {path}\ngrid: {path.parent / 'grid.png'}")
        return
    from brainrecon.reconstruct import reconstruct as run_reconstruct
    with leaves_no_new_folder(out):
        path = run_reconstruct(run, split, out, data_dir, device, subject)
    out_console.print(f"reconstructions: {path}\ngallery: {path.parent / 'gallery.png'}")


def check_reconstructions(paths: List[Path], subject: Optional[int]) -> List[Path]:
    """Each RECONS argument is a run folder or a reconstructions .npz file (checked before numpy reads it) -> the
    file each names (a group run's subject chosen with --subject)."""
    from brainrecon.evaluation.recon_paths import reconstruction_file
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder; give a reconstructions.npz file or a run folder")
        if p.is_file() and p.suffix != ".npz":
            raise UserError(f"{p}: not a reconstructions .npz file; give the reconstructions.npz that `brainrecon "
                            f"reconstruct` writes, or its run folder")
    return [reconstruction_file(p, subject) for p in paths]


@user_errors
def evaluate(
    recons: List[Path] = typer.Argument(..., metavar="RECONS", help="reconstructions.npz files or run folders."),
    ways: Optional[str] = typer.Option(None, "--ways", metavar="LIST", help="n of the n-way identification, comma "
                                       "separated (default 2,5,10; with --exhaustive 2)."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", metavar="METRIC", help=metric_help()),
    repeats: int = typer.Option(100, "--repeats", metavar="N", parser=integer(1), help="Random draws of the n - 1 "
                                "distractors per image."),
    mode: str = typer.Option("both", "--mode", metavar="MODE", help="percent (% correct), rank or both."),
    seed: int = typer.Option(0, "--seed", metavar="N", parser=integer(), help="Seed of the distractor draws and the "
                             "bootstrap."),
    distractors: str = typer.Option("test", "--distractors", metavar="SOURCE", help="test (the other test images), "
                                    "imagenet (the data folder's unpaired images) or a folder of images."),
    pool_size: int = typer.Option(1000, "--pool-size", metavar="N", parser=integer(1), help="Distractor images drawn "
                                  "from imagenet or the folder."),
    exhaustive: bool = typer.Option(False, "--exhaustive", metavar="", help="The 2-way against every other test image "
                                    "in turn instead of random draws (takes --distractors test and --ways 2)."),
    out: Path = typer.Option(Path("runs/evaluation"), "--out", metavar="DIR", help="Folder for the tables and plots."),
    data_dir: Optional[Path] = DataDir,
    suite: Optional[str] = typer.Option(None, "--suite", metavar="SUITE", help="nsd: also the eight metrics of the "
                                        "NSD papers (PixCorr, SSIM, AlexNet(2), AlexNet(5), InceptionV3, CLIP, "
                                        "EffNet-B, SwAV) in their published layout; needs pip install "
                                        "'brainrecon\\[nsd]'."),
    download: bool = typer.Option(True, "--download/--no-download", metavar="", help="With --suite nsd: fetch the "
                                  "metric networks' weights on first use (else only cached weights; the rest "
                                  "unavailable)."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="Where the --suite and MiDaS networks run: "
                               "auto, cpu, cuda, cuda:N or mps."),
    depth_from_rgb: bool = typer.Option(False, "--depth-from-rgb", metavar="", help="Also score MiDaS's depth of RGB "
                                        "reconstructions (the paper's arm: an rgb-only run's, given with an rgbd or "
                                        "depth-only run of the same test images) against the same ground truth as "
                                        "the directly decoded depth, and compare the two image by image."),
    depth_arm: str = typer.Option("rgb-only", "--depth-arm", metavar="ARM", help="With --depth-from-rgb: rgb-only "
                                  "(the paper's) or rgbd (MiDaS on an rgbd run's own RGB)."),
    depth_gt: str = typer.Option("release", "--depth-gt", metavar="GT", help="With --depth-from-rgb: release (the "
                                 "release's MiDaS-large depth) or midas-on-rgb (the same MiDaS on the ground-truth "
                                 "RGB, the original's for this arm)."),
    midas: str = typer.Option("small", "--midas", metavar="MODEL", help="With --depth-from-rgb: small (as the "
                              "original) or large."),
    subject: Optional[int] = GroupSubjectOpt,
    fmt: str = FormatOpt,
):
    """n-way identification (% correct and rank) with bootstrap CIs, paired comparisons between runs, tables and a
    plot."""
    check_choice("--mode", mode, ("percent", "rank", "both"))
    check_choice("--midas", midas, ("small", "large"))
    check_choice("--depth-arm", depth_arm, ("rgb-only", "rgbd"))
    check_choice("--depth-gt", depth_gt, ("release", "midas-on-rgb"))
    check_choice("--suite", suite, ("nsd",))
    check_choice("--format", fmt, FORMATS)
    check_device("--device", device)
    for name in metric or ():
        metric_spec(name)                                   # an unknown name: one line listing the known ones
    if exhaustive and ways not in (None, "2"):
        raise UserError(f"--exhaustive is the 2-way against every other test image: it takes no --ways {ways} (drop "
                        "--ways, or --exhaustive for random n-way draws)")
    if exhaustive and distractors != "test":
        raise UserError(f"--exhaustive draws its distractors from the test images: it takes no --distractors "
                        f"{distractors}")
    ways_t = parse_integers("--ways", ways or ("2" if exhaustive else "2,5,10"))
    if distractors not in ("test", "imagenet") and not Path(distractors).is_dir():
        raise UserError(f"--distractors {distractors}: no such folder; give test, imagenet or a folder of images")
    recons = check_reconstructions(recons, subject)
    root = resolve_data_dir(data_dir)
    from brainrecon.evaluation.identification import EvalOptions
    from brainrecon.evaluation.run_evaluation import evaluate_reconstructions
    opts = EvalOptions(ways=ways_t, metrics=tuple(metric or ()), repeats=repeats, mode=mode, seed=seed,
                       distractors=distractors, pool_size=pool_size, exhaustive=exhaustive)
    with leaves_no_new_folder(out):
        result = evaluate_reconstructions(recons, opts, root, out, depth_from_rgb=midas if depth_from_rgb else None,
                                          depth_arm=depth_arm, depth_gt=depth_gt,
                                          suite=suite, download=download, device=device,
                                          say=lambda s: err_console.print(s, highlight=False))
    written = print_tables(result.records, result.depth, fmt, result.paths["csv"])
    print_comparisons(result.comparisons)
    print_suite(result.suite_rows)
    paths = result.paths
    out_console.print(f"tables: {paths['csv']}{f', {written}' if written else ''}  plot: {paths['png']}" +
                      (f"  paired comparisons: {paths['comparisons_csv']}" if result.comparisons else "") +
                      (f"  NSD suite: {paths['nsd_suite_csv']}" if result.suite_rows else ""))


@user_errors
def classify(
    recons: List[Path] = typer.Argument(..., metavar="RECONS", help="reconstructions.npz files, run folders, or "
                                        "plain image arrays (.npy, or .npz with one array; (N, H, W, 3) uint8 or "
                                        "floats in [0, 1])."),
    class_images: Path = typer.Option(..., "--class-images", metavar="DIR", help="ImageNet-style tree, one folder per "
                                      "class: the class pool and its prototypes (for GOD: its 50 test synsets beside "
                                      "the ILSVRC-2012 classes)."),
    test_classes: Optional[Path] = typer.Option(None, "--test-classes", metavar="FILE", help="One class folder name "
                                                "per line (or `class,file name`), in test-image order (default: "
                                                "GOD's 50 test images)."),
    features: str = typer.Option("alexnet", "--features", metavar="NET", help=features_help()),
    size: str = typer.Option("112", "--size", metavar="SIZE", help="Side the images are classified at, bicubic resize "
                             "(the authors: 112) | native (the reconstructions' own side)."),
    jpeg: int = typer.Option(0, "--jpeg", metavar="QUALITY", parser=integer(0), help="JPEG round trip of the "
                             "reconstructions at this quality first (the authors: 75); 0 = none."),
    class_list: Optional[Path] = typer.Option(None, "--class-list", metavar="FILE", help="The class folders of "
                                              "--class-images to use, one per line (default: every folder holding "
                                              "images named like a synset, n + 8 digits, or like a test class)."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", metavar="", help="Score even when prototype images "
                                       "are among the run's unpaired training images (refused otherwise); rows say "
                                       "so."),
    per_class: int = typer.Option(100, "--per-class", metavar="N", parser=integer(1), help="Images per class "
                                  "prototype (at most)."),
    ways: str = typer.Option("50,100,500,1000", "--ways", metavar="LIST", help="Classes per trial (n), comma "
                             "separated."),
    top: str = typer.Option("1,5", "--top", metavar="LIST", help="Top-k accuracies, comma separated."),
    trials: int = typer.Option(1000, "--trials", metavar="N", parser=integer(1), help="Random trials per test image "
                               "and n."),
    seed: int = typer.Option(0, "--seed", metavar="N", parser=integer(), help="Seed of the trial draws and the "
                             "bootstrap."),
    out: Path = typer.Option(Path("runs/classification"), "--out", metavar="DIR", help="Folder for the tables and the "
                             "plot."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help="Folder for the cached prototypes "
                                         "(default: the data folder's cache/)."),
    data_dir: Optional[Path] = DataDir,
    device: str = DeviceAutoOpt,
    subject: Optional[int] = GroupSubjectOpt,
    fmt: str = FormatOpt,
):
    """Large-scale semantic classification of reconstructions: n-way among ImageNet classes (the NeuroImage 2022
    protocol), top-k accuracy vs n with bootstrap CIs, paired comparisons and a plot."""
    check_device("--device", device)
    check_choice("--format", fmt, FORMATS)
    ways_t, tops_t = parse_integers("--ways", ways), parse_integers("--top", top)
    for p in recons:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder; give reconstructions.npz files, run folders or image arrays")
    from brainrecon.evaluation.recon_paths import reconstruction_file
    recons = [reconstruction_file(p, subject) for p in recons]
    if not class_images.is_dir():
        raise UserError(f"--class-images {class_images}: no such folder; give an ImageNet-style tree, one folder per "
                        "class")
    for flag, path in (("--test-classes", test_classes), ("--class-list", class_list)):
        if path is not None and not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    from brainrecon.evaluation.classify_options import ClassifyOptions, parse_size
    check_choice("--features", features, FEATURE_NETS)
    opts = ClassifyOptions(ways=ways_t, tops=tops_t, trials=trials, seed=seed, per_class=per_class,
                           size=parse_size(size), jpeg=jpeg)
    root = resolve_data_dir(data_dir)
    from brainrecon.evaluation.classify_runs import classify_runs, paired, write_outputs
    from brainrecon.runtime import pick_device
    with leaves_no_new_folder(cache or root / "cache"), LazyProgress("class prototypes") as bar:
        rows = classify_runs(recons, class_images, opts, features, test_classes, cache or root / "cache",
                             pick_device(device), say=lambda s: err_console.print(s, highlight=False),
                             progress=lambda done, total: bar.update(completed=done, total=total),
                             class_list=class_list, allow_overlap=allow_overlap)
    comparisons = paired(rows, seed)
    with leaves_no_new_folder(out):
        paths = write_outputs(rows, comparisons, out)
    from brainrecon.evaluation.classify_runs import run_notes
    from brainrecon.evaluation.paper_tables import classification_table
    written = show([classification_table(rows, features, trials)], fmt, paths["csv"])
    for line in run_notes(rows):
        out_console.print(line, highlight=False)
    for c in comparisons:
        out_console.print(f"  {c['run_a']} - {c['run_b']}, {c['ways']}-way top-{c['top']}: {c['diff']:+.3f} "
                          f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], p = {c['p_value']:.3g}", highlight=False)
    out_console.print(f"tables: {paths['csv']}{f', {written}' if written else ''}  plot: {paths['png']}")
