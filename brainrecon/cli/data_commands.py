"""The data commands: fetch-data, simulate, convert-god, convert-nsd, make-depth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from brainrecon.cli.common import (
    DataDir,
    DeviceAutoOpt,
    LazyProgress,
    check_choice,
    check_device,
    err_console,
    integer,
    leaves_no_new_folder,
    number,
    out_console,
    parse_integers,
    resolve_data_dir,
    user_errors,
)
from brainrecon.errors import UserError


@user_errors
def fetch_data_cmd(
    data_dir: Optional[Path] = DataDir,
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="NAME", help="Group or file name (repeatable): "
                                             "fmri, stimuli, rgbd, imagenet, depth, vgg, midas, all (the release), "
                                             "god-h5 (the public GOD fMRI for convert-god; only when named), nsd "
                                             "(the NSD files convert-nsd reads, from NSD's bucket; only when "
                                             "named)."),
    subjects: Optional[str] = typer.Option(None, "--subjects", metavar="LIST", help="Subjects for the fmri and "
                                           "god-h5 groups (default 1,2,3,4,5), e.g. 1,3; for nsd (1..8) it must be "
                                           "given."),
    base_url: Optional[str] = typer.Option(None, "--base-url", metavar="URL", envvar="BRAINRECON_BASE_URL",
                                           help="Mirror or local server holding the release files."),
    registry: Optional[Path] = typer.Option(None, "--registry", metavar="FILE", help="Registry file with known "
                                            "sha256 hashes."),
    list_: bool = typer.Option(False, "--list", metavar="", help="Show the files, their groups, sizes and state; "
                               "download nothing."),
    verify: bool = typer.Option(False, "--verify", metavar="", help="Re-hash every present file against the "
                                "lock/registry; exits 2 when a file does not match its recorded sha256, or the folder "
                                "is missing or holds none of the chosen files (files never recorded show "
                                "`unverified`, exit 0)."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Show each file's size, the total and the "
                                 "destination; download and create nothing; exits 2 when no server could be reached "
                                 "to size any file."),
    yes: bool = typer.Option(False, "--yes", "-y", metavar="", help="Accept the data terms without asking."),
    sessions: Optional[str] = typer.Option(None, "--sessions", metavar="RANGE", help="With --only nsd: part of a "
                                           "subject, e.g. 1-5 (default: all its sessions)."),
):
    """Download the public release (fMRI, stimuli, depth, VGG and MiDaS weights): sizes first, verified, resumable."""
    import brainrecon.cli.fetch_screen as fetch_screen
    fetch_screen.run(resolve_data_dir(data_dir, must_exist=False), only or ["all"], subjects, base_url, registry,
                     list_, verify, dry_run, yes, out_console, sessions)


@user_errors
def simulate(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Folder to write the simulated subject into."),
    subject: Optional[int] = typer.Option(None, "--subject", metavar="N", parser=integer(1), help="Subject number: "
                                          "names the output sbj_<N>.npz (default 3)."),
    subjects: Optional[str] = typer.Option(None, "--subjects", metavar="N,N,...", help="A group instead of one "
                                           "subject (e.g. 1,2,3,4,5): sbj_<N>.npz each, the same images for all, each "
                                           "with its own voxel population (voxel count within +-10 % of --n-voxels)."),
    seed: int = typer.Option(0, "--seed", metavar="N", parser=integer(), help="Seed of the scenes, the encoding "
                             "model and the noise."),
    n_voxels: int = typer.Option(4500, "--n-voxels", metavar="N", parser=integer(50), help="Voxels in the file (about "
                                 "95 % of them in VC), at least 50."),
    n_unpaired: int = typer.Option(10000, "--n-unpaired", metavar="N", parser=integer(1), help="Unpaired images for "
                                   "the self-supervised decoder, at least 1."),
    resolution: int = typer.Option(112, "--resolution", metavar="PIXELS", parser=integer(16), help="Stimulus side in "
                                   "pixels (a multiple of 8, at least 16)."),
    luminance_share: float = typer.Option(0.05, "--luminance-share", metavar="FRACTION",
                                          parser=number(0, 1, high_open=True), help="Fraction of each voxel's "
                                          "explainable variance carried by pRF-pooled luminance, in [0, 1) (the "
                                          "rest: SOC contrast, colour, depth); recorded with its sources in "
                                          "simulated.json."),
    reliability: float = typer.Option(0.2, "--reliability", metavar="FRACTION", parser=number(0, 0.8, low_open=True,
                                      high_open=True), help="Median single-trial reliability over the voxels (signal "
                                      "variance / trial variance; the single-trial SNR): 0.2 standard, 0.05 a hard "
                                      "regime near real single-trial fMRI (see the results page of the docs)."),
):
    """Write a SIMULATED subject (or a group: --subjects) in the release formats (procedural RGBD scenes, SOC-model
    voxels)."""
    if subjects is not None and subject is not None:
        raise UserError(f"--subject {subject} and --subjects {subjects}: give one of them (--subjects writes every "
                        "subject it names)")
    group = parse_integers("--subjects", subjects) if subjects is not None else None
    subject = 3 if subject is None else subject
    from brainrecon.simulation.simulate import SimulationConfig, simulate_subject
    cfg = SimulationConfig(subject=subject, seed=seed, n_voxels=n_voxels, n_unpaired=n_unpaired, resolution=resolution,
                           luminance_share=luminance_share, median_reliability=reliability)
    if group is not None:
        from brainrecon.simulation.group import simulate_group
        with leaves_no_new_folder(out):
            m = simulate_group(out, cfg, list(group), progress=lambda s: err_console.print(f"simulate: {s}"))
        counts = ", ".join(f"{k}: {g['rois']['VC']}" for k, g in m["group"].items())
        out_console.print(f"SIMULATED group of {len(group)} subjects written to {out} in {m['seconds']:.1f}s "
                          f"(VC voxels per subject {counts}). This is not real fMRI.")
        return
    with leaves_no_new_folder(out):
        m = simulate_subject(out, cfg, progress=lambda s: err_console.print(f"simulate: {s}"))
    out_console.print(f"SIMULATED subject {subject} written to {out} in {m['seconds']:.1f}s: {m['rois']['VC']} VC "
                      f"voxels, median noise ceiling {m['median_noise_ceiling_vc']:.3f}, median single-trial "
                      f"split-half r {m['median_single_trial_split_half_r_vc']:.3f}. This is not real fMRI.")


@user_errors
def convert_god_cmd(
    subject: int = typer.Option(..., "--subject", metavar="N", parser=integer(1), help="GOD subject number, 1-5: "
                                "names the output sbj_<N>.npz."),
    images: Path = typer.Option(..., "--images", metavar="DIR", help="Folder holding the stimulus photos (searched "
                                "recursively)."),
    h5: Optional[Path] = typer.Option(None, "--h5", metavar="FILE", help="BData file (default: Subject<N>.h5 in the "
                                      "data dir)."),
    image_list: Optional[str] = typer.Option(None, "--image-list", metavar="TRAIN,TEST", help="TRAIN.csv,TEST.csv in "
                                             "GOD's id list format (default: the lists brainrecon carries)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Output folder (default: the data dir)."),
    roi: str = typer.Option("VC", "--roi", metavar="ROI", help="Voxels kept: ROI_<roi> of the file."),
    resolution: int = typer.Option(112, "--resolution", metavar="PIXELS", parser=integer(8), help="Stimulus side in "
                                   "pixels."),
    allow_missing: bool = typer.Option(False, "--allow-missing", metavar="", help="Drop the pairs whose photo is "
                                       "missing."),
    data_dir: Optional[Path] = DataDir,
):
    """Convert the public GOD fMRI (bdpy HDF5) and the stimulus photos into sbj_<N>.npz and images_<res>.npz."""
    from brainrecon.sources.god_fetch import SUBJECTS as GOD_SUBJECTS
    if subject not in GOD_SUBJECTS:
        raise UserError(f"--subject {subject}: GOD has subjects {min(GOD_SUBJECTS)}..{max(GOD_SUBJECTS)}")
    root = resolve_data_dir(data_dir)
    from brainrecon.sources.god import ConvertOptions, convert_god
    from brainrecon.sources.god_lists import image_list_paths
    opts = ConvertOptions(subject=subject, roi=roi, resolution=resolution, allow_missing=allow_missing,
                          image_lists=image_list_paths(image_list))
    with leaves_no_new_folder(out or root):
        record = convert_god(h5 or root / f"Subject{subject}.h5", images, out or root, opts,
                             say=lambda s: err_console.print(f"convert-god: {s}", highlight=False))
    c, dropped = record["counts"], record["dropped"]
    missing = len(dropped["training_images_without_photo"]) + len(dropped["test_images_without_photo"])
    out_console.print(f"{record['outputs']['fmri']}: {c['train_samples']} training samples, {c['test_images']} test "
                      f"images x {c['repeats_per_test_image']} repeats, {c['voxels']} {roi} voxels; "
                      f"{record['outputs']['stimuli']} at {resolution} px; {missing} photos missing (pairs dropped)"
                      f" -> {out or root} (provenance: convert.json)")


@user_errors
def convert_nsd_cmd(
    subject: int = typer.Option(..., "--subject", metavar="N", parser=integer(), help="NSD subject, 1-8."),
    nsd_dir: Optional[Path] = typer.Option(None, "--nsd-dir", metavar="DIR", help="NSD files in the bucket's layout "
                                           "(default: the data dir's nsd/, where fetch-data --only nsd puts them)."),
    sessions: Optional[str] = typer.Option(None, "--sessions", metavar="RANGE", help="e.g. 1-37 or 1,3,5-8 (default: "
                                           "every session whose betas file is present)."),
    roi: str = typer.Option("nsdgeneral", "--roi", metavar="ROI", help="Voxels kept: the roi/<roi>.nii.gz mask (> 0 "
                            "inside)."),
    resolution: int = typer.Option(112, "--resolution", metavar="PIXELS", parser=integer(8), help="Stimulus side in "
                                   "pixels."),
    train: str = typer.Option("trials", "--train", metavar="HOW", help="trials (single trials, as MindEye) or "
                              "average (each image's trials averaged, as Brain-Diffuser)."),
    test_repeats: int = typer.Option(3, "--test-repeats", metavar="N", parser=integer(1), help="Shared images seen "
                                     "fewer times are dropped (listed in convert.json)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Output folder (default: the data dir's "
                                       "nsd_subj<NN>/; train and evaluate with --data-dir there)."),
    repeat_check: bool = typer.Option(True, "--repeat-check/--no-repeat-check", metavar="", help="Refuse a session "
                                      "whose trials do not resemble their images' other presentations."),
    unpaired: int = typer.Option(0, "--unpaired", metavar="N", parser=integer(0), help="Also write N brick images the "
                                 "subject never saw, as the self-supervised decoder's unpaired images (in "
                                 "imagenet/val/nsd_unseen/ of --out)."),
    data_dir: Optional[Path] = DataDir,
):
    """Convert one NSD subject (betas, masks, design, stimulus brick) into sbj_<N>.npz and images_<res>.npz."""
    from brainrecon.sources.nsd import files
    check_choice("--train", train, ("trials", "average"))
    if subject not in files.SESSIONS:
        raise UserError(f"--subject {subject}: NSD has subjects {min(files.SESSIONS)}..{max(files.SESSIONS)}")
    root = resolve_data_dir(data_dir)
    out = out or root / f"nsd_subj{subject:02d}"
    chosen = files.parse_sessions(sessions, subject) if sessions else None
    from brainrecon.sources.nsd.convert import NsdOptions, convert_nsd
    opts = NsdOptions(subject=subject, nsd_dir=nsd_dir or root / "nsd", out=out, roi=roi, resolution=resolution,
                      sessions=chosen, train=train, test_repeats=test_repeats, repeat_check=repeat_check,
                      unpaired=unpaired)
    with leaves_no_new_folder(out), LazyProgress("convert-nsd") as bar:
        record = convert_nsd(opts, say=lambda s: err_console.print(f"convert-nsd: {s}", highlight=False),
                             progress=lambda done, total, what: bar.update(completed=done, total=total,
                                                                           description=f"convert-nsd: {what}"))
    c = record["counts"]
    out_console.print(f"{record['outputs']['fmri']}: {c['train_rows']} training rows ({record['train']}, "
                      f"{c['train_images']} images), {c['test_images']} test images x {record['test_repeats']} "
                      f"repeats, {c['voxels']} {roi} voxels; {record['outputs']['stimuli']} at {resolution} px -> "
                      f"{out} (provenance: convert.json; train with --data-dir {out} --subject {subject})")


@user_errors
def make_depth_cmd(
    images: Optional[Path] = typer.Option(None, "--images", metavar="DIR", help="ImageNet-style tree (class "
                                          "subfolders)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Folder for the depth PNGs "
                                       "(with --rgbd-npz: for the RGBD npz)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL", help="small or large (default: large with "
                                        "--rgbd-npz, as the release's RGBD file; small with --images, as the "
                                        "decoder's unpaired depth)."),
    weights: Optional[Path] = typer.Option(None, "--weights", metavar="FILE", help="MiDaS checkpoint (default: in the "
                                           "data dir)."),
    batch_size: int = typer.Option(8, "--batch-size", metavar="N", parser=integer(1), help="Images per MiDaS batch."),
    device: str = DeviceAutoOpt,
    rgbd_npz: Optional[Path] = typer.Option(None, "--rgbd-npz", metavar="FILE", help="images_<res>.npz to turn into "
                                            "the RGBD npz the trainers read "
                                            "(rgbd_<res>_from_224_large_png_uint8.npz)."),
    source_size: Optional[int] = typer.Option(None, "--source-size", metavar="PIXELS", parser=integer(8),
                                              help="With --rgbd-npz: compute depth on the stimuli resized to this "
                                              "side (default 224, the release's)."),
    net_size: Optional[int] = typer.Option(None, "--net-size", metavar="PIXELS", parser=integer(32), help="MiDaS "
                                           "input side, a multiple of 32 (default the model's: 384 large, 256 "
                                           "small); smaller is faster and coarser."),
    data_dir: Optional[Path] = DataDir,
):
    """Run MiDaS v2.1 depth over an image tree (uint8 PNGs) or a stimulus npz (RGBD npz)."""
    check_choice("--model", model, ("small", "large"))
    if net_size is not None and net_size % 32:
        raise UserError(f"--net-size {net_size} must be a multiple of 32, at least 32")
    check_device("--device", device)
    if (images is None) == (rgbd_npz is None) or out is None:
        raise UserError("give --out and exactly one of --images DIR (an image tree) or --rgbd-npz FILE")
    root = resolve_data_dir(data_dir)
    from brainrecon import depth
    from brainrecon.runtime import pick_device
    model = model or (depth.RGBD_MODEL if rgbd_npz is not None else "small")
    dev = pick_device(device)
    net = depth.load_model(model, weights, root, dev)
    if rgbd_npz is not None:
        with leaves_no_new_folder(out):
            path = depth.rgbd_npz(rgbd_npz, out, net, dev, model, source_size, batch_size, net_size)
        out_console.print(f"RGBD stimuli written to {path}")
        read = depth.rgbd_name(int(path.name.split("_")[1]), depth.RGBD_SOURCE_SIZE, depth.RGBD_MODEL)
        if path.name != read:
            out_console.print(f"note: train-encoder / train-decoder read {read} only (MiDaS large at 224 px, the "
                              f"release's recipe); for them, run make-depth without --model / --source-size")
        elif net_size is not None and net_size != net.spec.net_size:
            out_console.print(f"note: depth computed at MiDaS input side {net_size}, not the release's "
                              f"{net.spec.net_size}: coarser than the release's maps, though the trainers read it "
                              f"under the same name; rerun without --net-size for the release's recipe")
        return
    t0 = time.perf_counter()
    with leaves_no_new_folder(out), LazyProgress("make-depth") as bar:
        report = depth.depth_tree(images, out, net, dev, batch_size, lambda n, r: bar.update(
            advance=n, description=f"make-depth {r.written / max(time.perf_counter() - t0, 1e-9):.1f} img/s"),
            net_size=net_size)
    for f, why in report.failed:
        err_console.print(f"skipped unreadable image {f}: {why}")
    out_console.print(f"{report.written} depth maps written, {report.skipped_existing} already present, "
                      f"{len(report.failed)} skipped, {report.images_per_second:.1f} images/s -> {out}")
    if report.failed:
        raise typer.Exit(code=1)
