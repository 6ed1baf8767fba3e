"""The command line: one thin command per subcommand over library functions.

UserError (bad input a user can fix, a full disk) -> one line on stderr, exit 2. Ctrl-C in training -> checkpoint kept,
exit 130; SIGTERM / SIGUSR1 (preemption) -> the same, exit 143.
Bugs keep their traceback.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brainrecon.errors import Interrupted, UserError
from brainrecon.config import ALL_METRICS

def _flags_as_flags() -> None:
    """typer >= 0.26 prints a type beside every option in --help (`--resume <bool>`, `--set <list[str]>`), so flags
    read as if they took a value: show none for a flag and the item type for a repeatable option."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    if option is None or not hasattr(option, "display_type_rich") or getattr(option, "_brainrecon", False):
        return
    original = option.display_type_rich

    def display(self, ctx):
        if self.is_flag:
            return None
        shown = original(self, ctx)
        return shown.replace("<list[", "<").replace("]>", ">") if isinstance(shown, str) else shown
    option.display_type_rich, option._brainrecon = display, True


_flags_as_flags()
app = typer.Typer(help="Reconstruct what a person saw (image and depth) from fMRI, with self-supervision.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False)
WIDTH = shutil.get_terminal_size((140, 24)).columns  # piped output is not cut at 80 columns
out_console = Console(width=WIDTH)
err_console = Console(stderr=True, width=WIDTH)

config_app = typer.Typer(help="See the resolved configuration a run would use.", no_args_is_help=True)
app.add_typer(config_app, name="config")

DataDir = typer.Option(None, "--data-dir", help="Data folder (else $BRAINRECON_DATA, else the per-user cache).")
Sets = typer.Option(None, "--set", help="Config override section.key=value (repeatable).")
ConfigOpt = typer.Option("paper", "--config", help="YAML path or preset name: paper | demo | demo,quick.")
DeviceOpt = typer.Option(None, "--device", help="auto | cpu | cuda | mps (overrides train.device).")
ModalityOpt = typer.Option("rgbd", "--modality", help="rgb | depth | rgbd")
SubjectOpt = typer.Option(3, "--subject", help="GOD subject (selects sbj_<N>.npz).")
EpochsOpt = typer.Option(None, "--epochs", help="Overrides the config's epoch count.")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads for torch (default: OMP_NUM_THREADS, else the CPUs "
                          "this process may use, split among torchrun's ranks on this host).")


def user_errors(fn):
    """Turn a UserError into one line + exit 2, an interrupt into exit 130."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except (Interrupted, KeyboardInterrupt) as e:
            err_console.print(f"[yellow]interrupted:[/] {escape(str(e) or 'stopped by the user')}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(code=getattr(e, "exit_code", 130)) from None
    return wrapper


def _say(message: str) -> None:
    """Print on rank 0 only (under torchrun every rank runs the command)."""
    if os.environ.get("RANK", "0") == "0":
        out_console.print(message)


def _data_dir(flag: Optional[Path], must_exist: bool = True) -> Path:
    """--data-dir (else $BRAINRECON_DATA, else the per-user cache). A folder named by the user must exist: a typo is
    answered with that, not with a suggestion to download the release into it."""
    from brainrecon.data.layout import data_dir
    root = data_dir(flag)
    if flag and must_exist and not root.is_dir():
        raise UserError(f"--data-dir {flag}: folder does not exist; check the path, or download into it with "
                        f"`brainrecon fetch-data --data-dir {flag}`")
    return root


DEVICES = ("auto", "cpu", "cuda", "mps")


def _choice(flag: str, value: Optional[str], choices) -> None:
    """A bad option value: one line naming the flag as typed and its choices (checked before torch is imported)."""
    if value is not None and value not in choices:
        raise UserError(f"{flag} {value!r}: choose one of {', '.join(choices)}")


def _device(flag: str, value: Optional[str]) -> None:
    if value is not None and not (value in DEVICES or (value.startswith("cuda:") and value[5:].isdigit())):
        raise UserError(f"{flag} {value!r}: choose one of {', '.join(DEVICES)} (or cuda:N)")


def _overrides(sets, device, epochs, threads=None) -> list[str]:
    out = list(sets or [])
    if device:
        out.append(f"train.device={device}")
    if epochs:
        out.append(f"train.epochs={epochs}")
    if threads:
        out.append(f"train.threads={threads}")
    return out


def _version(value: bool) -> None:
    if value:
        from brainrecon import __version__
        out_console.print(f"brainrecon {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")):
    """Reconstruct what a person saw (image and depth) from fMRI, with self-supervision."""


@config_app.command("show")
@user_errors
def config_show(
    stage: str = typer.Option(..., "--stage", help="encoder | decoder"), modality: str = ModalityOpt,
    config: str = ConfigOpt, sets: Optional[List[str]] = Sets,
):
    """Print the fully resolved YAML a run would use (the text it writes to config.yaml); loads back with --config."""
    from brainrecon.config import load_config, to_yaml
    sys.stdout.write(to_yaml(load_config(stage, modality, config, sets)))


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


@app.command("train-encoder")
@user_errors
def train_encoder_cmd(
    modality: str = ModalityOpt, subject: int = SubjectOpt, data_dir: Optional[Path] = DataDir,
    config: str = ConfigOpt,
    roi: Optional[str] = typer.Option(None, "--roi", help="ROI (default VC)."),
    epochs: Optional[int] = EpochsOpt,
    backbone_weights: Optional[str] = typer.Option(None, "--backbone-weights", help="release | imagenet | none"),
    out: Path = typer.Option(Path("runs/encoder"), "--out"), resume: bool = ResumeOpt,
    sets: Optional[List[str]] = Sets, device: Optional[str] = DeviceOpt, threads: Optional[int] = ThreadsOpt,
):
    """Train the image -> voxels encoder."""
    from brainrecon.config import MODALITIES, ROIS, load_config
    _choice("--modality", modality, MODALITIES)
    _choice("--roi", roi, ROIS)
    _choice("--backbone-weights", backbone_weights, ("release", "imagenet", "none"))
    _device("--device", device)
    root = _data_dir(data_dir)
    from brainrecon.train.encoder import train_encoder
    extra = {"data": {"subject": subject, **({"roi": roi} if roi else {})},
             **({"model": {"backbone_weights": backbone_weights}} if backbone_weights else {})}
    cfg = load_config("encoder", modality, config, _overrides(sets, device, epochs, threads), extra)
    m = train_encoder(cfg, root, out, resume=resume)
    _say(f"encoder: median test r {m['median_r']:.3f}, r/ceiling {m['median_r_over_ceiling']:.2f} "
         f"({m['epochs']} epochs, {m['seconds']:.0f}s) -> {out}")


@app.command("train-decoder")
@user_errors
def train_decoder_cmd(
    modality: str = ModalityOpt, subject: int = SubjectOpt, data_dir: Optional[Path] = DataDir,
    config: str = ConfigOpt,
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="train-encoder --out folder."),
    model: str = typer.Option("deep", "--model", help="deep | ridge"),
    no_self_supervision: bool = typer.Option(False, "--no-self-supervision", help="Train on the pairs only (the ED "
                                             "and DE cycles off)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="ROI (default VC); the --encoder run's ROI must match."),
    epochs: Optional[int] = EpochsOpt,
    out: Path = typer.Option(Path("runs/decoder"), "--out"), resume: bool = ResumeOpt,
    sets: Optional[List[str]] = Sets, device: Optional[str] = DeviceOpt, threads: Optional[int] = ThreadsOpt,
):
    """Train the voxels -> image decoder (supervised + self-supervised), or the ridge baseline."""
    from brainrecon.config import MODALITIES, ROIS, load_config
    _choice("--modality", modality, MODALITIES)
    _choice("--model", model, ("deep", "ridge"))
    _choice("--roi", roi, ROIS)
    _device("--device", device)
    root = _data_dir(data_dir)
    from brainrecon.train.decoder import train_decoder
    extra = {"data": {"subject": subject, **({"roi": roi} if roi else {})}, "model": {"kind": model},
             **({"train": {"self_supervision": False}} if no_self_supervision else {})}
    cfg = load_config("decoder", modality, config, _overrides(sets, device, epochs, threads), extra)
    m = train_decoder(cfg, root, out, encoder_run=encoder, resume=resume)
    _say(f"decoder ({model}) trained in {m['seconds']:.0f}s -> {out}")


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
    device: str = typer.Option("auto", "--device", help="Where the --suite networks run."),
):
    """n-way identification (% correct and rank) with bootstrap CIs, tables and a plot."""
    _choice("--mode", mode, ("percent", "rank", "both"))
    _choice("--suite", suite, ("nsd",))
    _device("--device", device)
    root = _data_dir(data_dir)
    from brainrecon.evaluation.compare import compare_runs
    from brainrecon.evaluation.identification import EvalOptions, evaluate_runs, write_outputs
    from brainrecon.reconstruct import load_reconstructions
    try:
        ways_t = tuple(int(w) for w in ways.split(","))
    except ValueError:
        raise UserError(f"--ways {ways!r} must be integers separated by commas, e.g. 2,5,10") from None
    opts = EvalOptions(ways=ways_t, metrics=tuple(metric or ()), repeats=repeats, mode=mode, seed=seed,
                       distractors=distractors, pool_size=pool_size, exhaustive=exhaustive)
    if suite not in (None, "nsd"):
        raise UserError(f"--suite {suite!r}: the one suite is nsd")
    from brainrecon.reconstruct import distinct_runs, with_ceilings
    loaded = with_ceilings(distinct_runs([load_reconstructions(p) for p in recons]))
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
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the simulated data, the runs and the "
                             "evaluation; a rerun reuses only the stages made with the same settings."),
    modality: str = ModalityOpt,
    full: bool = typer.Option(False, "--full", help="The converged demo: more voxels, unpaired images and epochs "
                              "(about 35 min on 2 CPU cores without native bf16)."),
    threads: Optional[int] = ThreadsOpt,
):
    """The whole method on a built-in SIMULATED subject, on a CPU: about 5 minutes on 2 cores (--full: about 35)."""
    from brainrecon.config import MODALITIES
    _choice("--modality", modality, MODALITIES)
    from brainrecon.demo import run_demo
    result = run_demo(out, modality, "full" if full else "default",
                      say=lambda s: err_console.print(s, highlight=False), threads=threads or 0)
    print_tables(result["records"], [])
    print_comparisons(result["comparisons"])
    out_console.print(f"gallery: {result['gallery']}\ndeep beside ridge: {result['gallery_vs_ridge']}\n"
                      f"identification plot: {result['plot']}\n"
                      "(simulated subject: procedural scenes and simulated voxels, not real fMRI)")


def main(argv: Optional[List[str]] = None) -> int:
    """The `brainrecon` entry point: click's own usage errors (an unknown option, `--epochs abc`) become the same
    one line as every other bad input, `error: ...` on stderr with exit 2, instead of a boxed panel."""
    import click
    try:
        result = app(args=argv, standalone_mode=False)
    except click.exceptions.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:   # bare `brainrecon` or `brainrecon config`
            out_console.print(e.ctx.get_help(), highlight=False, markup=False)
            return 0
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        from rich.markup import escape
        err_console.print(f"[bold red]error:[/] {escape(e.format_message() + hint)}", highlight=False,
                          soft_wrap=True)
        return 2
    except click.exceptions.Abort:
        err_console.print("interrupted: stopped by the user", highlight=False, markup=False)
        return 130
    return result if isinstance(result, int) else 0


def main_entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())
