"""The data commands: fetch-data, simulate, convert-god, convert-nsd, make-depth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from brainrecon.cli.common import (DataDir, UserError, _choice, _data_dir, _device, app, err_console, out_console,
                                   user_errors)


@app.command("fetch-data")
@user_errors
def fetch_data_cmd(
    data_dir: Optional[Path] = DataDir,
    only: Optional[List[str]] = typer.Option(None, "--only", help="Group or file name (repeatable): fmri, stimuli, "
                                             "rgbd, imagenet, depth, vgg, midas, all (the release), god-h5 (the "
                                             "public GOD fMRI for convert-god; only when named), nsd (the NSD "
                                             "files convert-nsd reads, from NSD's bucket; only when named)."),
    subjects: Optional[str] = typer.Option(None, "--subjects", help="Subjects for the fmri and god-h5 groups (default "
                                           "1,2,3,4,5), e.g. 1,3; for nsd (1..8) it must be given."),
    base_url: Optional[str] = typer.Option(None, "--base-url", envvar="BRAINRECON_BASE_URL",
                                           help="Mirror or local server holding the release files."),
    registry: Optional[Path] = typer.Option(None, "--registry", help="Registry file with known sha256 hashes."),
    list_: bool = typer.Option(False, "--list", help="Show the files, their groups and state; download nothing."),
    verify: bool = typer.Option(False, "--verify", help="Re-hash every present file against the lock/registry."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be downloaded; download nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept the data terms without asking."),
    sessions: Optional[str] = typer.Option(None, "--sessions", help="With --only nsd: part of a subject, e.g. 1-5 "
                                           "(default: all its sessions)."),
):
    """Download the public release (fMRI, stimuli, depth, VGG and MiDaS weights): verified, cached, resumable."""
    from brainrecon.data import fetch
    if subjects is None and only and "nsd" in only:
        raise UserError("--only nsd needs --subjects (e.g. --subjects 1): one NSD subject is ~40 GB of betas")
    subjects = subjects or "1,2,3,4,5"
    fetch.run_cli(_data_dir(data_dir, must_exist=False), only or ["all"], subjects, base_url, registry, list_, verify, dry_run, yes,
                  out_console, sessions)


@app.command()
@user_errors
def simulate(
    out: Path = typer.Option(..., "--out", help="Folder to write the simulated subject into."),
    subject: int = typer.Option(3, "--subject", help="Subject number: names the output sbj_<N>.npz."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scenes, the encoding model and the noise."),
    n_voxels: int = typer.Option(4500, "--n-voxels", help="Voxels in the file (about 95 % of them in VC)."),
    n_unpaired: int = typer.Option(10000, "--n-unpaired", help="Unpaired images for the self-supervised decoder."),
    resolution: int = typer.Option(112, "--resolution", help="Stimulus side in pixels (a multiple of 8)."),
    luminance_share: float = typer.Option(0.05, "--luminance-share", help="Fraction of each voxel's explainable "
                                          "variance carried by pRF-pooled luminance (the rest: SOC contrast, colour, "
                                          "depth). 0.05 was fixed before any result; see simulation/soc.py."),
):
    """Write a SIMULATED subject in the release formats (procedural RGBD scenes, SOC-model voxels)."""
    from brainrecon.simulation.simulate import SimulationConfig, simulate_subject
    cfg = SimulationConfig(subject=subject, seed=seed, n_voxels=n_voxels, n_unpaired=n_unpaired, resolution=resolution,
                           luminance_share=luminance_share)
    m = simulate_subject(out, cfg, progress=lambda s: err_console.print(f"simulate: {s}"))
    out_console.print(f"SIMULATED subject {subject} written to {out} in {m['seconds']:.1f}s: {m['rois']['VC']} VC "
                      f"voxels, median noise ceiling {m['median_noise_ceiling_vc']:.3f}, median single-trial "
                      f"split-half r {m['median_single_trial_split_half_r_vc']:.3f}. This is not real fMRI.")


@app.command("convert-god")
@user_errors
def convert_god_cmd(
    subject: int = typer.Option(..., "--subject", help="GOD subject number: names the output sbj_<N>.npz."),
    images: Path = typer.Option(..., "--images", help="Folder holding the stimulus photos (searched recursively)."),
    h5: Optional[Path] = typer.Option(None, "--h5", help="BData file (default: Subject<N>.h5 in the data dir)."),
    image_list: Optional[str] = typer.Option(None, "--image-list", help="TRAIN.csv,TEST.csv in GOD's id list format "
                                             "(default: the lists brainrecon carries)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the data dir)."),
    roi: str = typer.Option("VC", "--roi", help="Voxels kept: ROI_<roi> of the file."),
    resolution: int = typer.Option(112, "--resolution", help="Stimulus side in pixels."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Drop the pairs whose photo is missing."),
    data_dir: Optional[Path] = DataDir,
):
    """Convert the public GOD fMRI (bdpy HDF5) and the stimulus photos into sbj_<N>.npz and images_<res>.npz."""
    from brainrecon.sources.god import ConvertOptions, convert_god, image_list_paths
    root = _data_dir(data_dir)
    opts = ConvertOptions(subject=subject, roi=roi, resolution=resolution, allow_missing=allow_missing,
                          image_lists=image_list_paths(image_list))
    record = convert_god(h5 or root / f"Subject{subject}.h5", images, out or root, opts,
                         say=lambda s: err_console.print(f"convert-god: {s}", highlight=False))
    c, dropped = record["counts"], record["dropped"]
    missing = len(dropped["training_images_without_photo"]) + len(dropped["test_images_without_photo"])
    out_console.print(f"{record['outputs']['fmri']}: {c['train_samples']} training samples, {c['test_images']} test "
                      f"images x {c['repeats_per_test_image']} repeats, {c['voxels']} {roi} voxels; "
                      f"{record['outputs']['stimuli']} at {resolution} px; {missing} photos missing (pairs dropped)"
                      f" -> {out or root} (provenance: convert.json)")


@app.command("convert-nsd")
@user_errors
def convert_nsd_cmd(
    subject: int = typer.Option(..., "--subject", help="NSD subject 1..8."),
    nsd_dir: Optional[Path] = typer.Option(None, "--nsd-dir", help="NSD files in the bucket's layout (default: the "
                                           "data dir's nsd/, where fetch-data --only nsd puts them)."),
    sessions: Optional[str] = typer.Option(None, "--sessions", help="e.g. 1-37 or 1,3,5-8 (default: every session "
                                           "whose betas file is present)."),
    roi: str = typer.Option("nsdgeneral", "--roi", help="Voxels kept: the roi/<roi>.nii.gz mask (> 0 inside)."),
    resolution: int = typer.Option(112, "--resolution", help="Stimulus side in pixels."),
    train: str = typer.Option("trials", "--train", help="trials (single trials, as MindEye) | average (each "
                              "image's trials averaged, as Brain-Diffuser)."),
    test_repeats: int = typer.Option(3, "--test-repeats", help="Shared images seen fewer times are dropped "
                                     "(listed in convert.json)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the data dir's nsd_subj<NN>/; "
                                       "train and evaluate with --data-dir there)."),
    repeat_check: bool = typer.Option(True, "--repeat-check/--no-repeat-check", help="Refuse a session whose "
                                      "trials do not resemble their images' other presentations."),
    unpaired: int = typer.Option(0, "--unpaired", help="Also write N brick images the subject never saw as the "
                                 "self-supervised decoder's unpaired images (out/imagenet/val/nsd_unseen/)."),
    data_dir: Optional[Path] = DataDir,
):
    """Convert one NSD subject (betas, masks, design, stimulus brick) into sbj_<N>.npz and images_<res>.npz."""
    from brainrecon.sources.nsd import files
    _choice("--train", train, ("trials", "average"))
    if subject not in files.SESSIONS:
        raise UserError(f"--subject {subject}: NSD has subjects {min(files.SESSIONS)}..{max(files.SESSIONS)}")
    from brainrecon.sources.nsd.convert import NsdOptions, convert_nsd
    root = _data_dir(data_dir)
    out = out or root / f"nsd_subj{subject:02d}"
    opts = NsdOptions(subject=subject, nsd_dir=nsd_dir or root / "nsd", out=out, roi=roi, resolution=resolution,
                      sessions=files.parse_sessions(sessions, subject) if sessions else None, train=train,
                      test_repeats=test_repeats, repeat_check=repeat_check, unpaired=unpaired)
    from rich.progress import Progress
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("convert-nsd", total=None)

        def progress(done: int, total: int, what: str):
            bar.update(task, completed=done, total=total, description=f"convert-nsd: {what}")
        record = convert_nsd(opts, say=lambda s: err_console.print(f"convert-nsd: {s}", highlight=False),
                             progress=progress)
    c = record["counts"]
    out_console.print(f"{record['outputs']['fmri']}: {c['train_rows']} training rows ({record['train']}, "
                      f"{c['train_images']} images), {c['test_images']} test images x {record['test_repeats']} "
                      f"repeats, {c['voxels']} {roi} voxels; {record['outputs']['stimuli']} at {resolution} px -> "
                      f"{out} (provenance: convert.json; train with --data-dir {out} --subject {subject})")


@app.command("make-depth")
@user_errors
def make_depth_cmd(
    images: Optional[Path] = typer.Option(None, "--images", help="ImageNet-style tree (class subfolders)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the depth PNGs."),
    model: str = typer.Option("small", "--model", help="small | large"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="MiDaS checkpoint (default: in the data dir)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per MiDaS batch."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    rgbd_npz: Optional[Path] = typer.Option(None, "--rgbd-npz", help="images_<res>.npz to turn into the RGBD npz."),
    source_size: Optional[int] = typer.Option(None, "--source-size", help="Compute depth at this size (e.g. 224)."),
    data_dir: Optional[Path] = DataDir,
):
    """Run MiDaS v2.1 depth over an image tree (uint8 PNGs) or a stimulus npz (RGBD npz)."""
    _choice("--model", model, ("small", "large"))
    _device("--device", device)
    from brainrecon import depth
    from brainrecon.train.core import pick_device
    if (images is None) == (rgbd_npz is None) or out is None:
        raise UserError("give --out and exactly one of --images DIR (an image tree) or --rgbd-npz FILE")
    dev = pick_device(device)
    net = depth.load_model(model, weights, _data_dir(data_dir), dev)
    if rgbd_npz is not None:
        path = depth.rgbd_npz(rgbd_npz, out, net, dev, model, source_size, batch_size)
        out_console.print(f"RGBD stimuli written to {path}")
        return
    from rich.progress import Progress
    t0 = time.perf_counter()
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("make-depth", total=None)
        report = depth.depth_tree(images, out, net, dev, batch_size, lambda n, r: bar.update(
            task, advance=n, description=f"make-depth {r.written / max(time.perf_counter() - t0, 1e-9):.1f} img/s"))
    for f, why in report.failed:
        err_console.print(f"skipped unreadable image {f}: {why}")
    out_console.print(f"{report.written} depth maps written, {report.skipped_existing} already present, "
                      f"{len(report.failed)} skipped, {report.images_per_second:.1f} images/s -> {out}")
    if report.failed:
        raise typer.Exit(code=1)
