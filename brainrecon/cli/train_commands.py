"""The training commands: config show, train-encoder, train-decoder. Every value is checked, and the config resolved,
before torch is imported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from brainrecon.cli.common import (
    ConfigOpt,
    DataDir,
    DeviceOpt,
    EpochsOpt,
    InitFromOpt,
    ModalityOpt,
    PairsOpt,
    ResumeOpt,
    RoiOpt,
    SeedOpt,
    Sets,
    SubjectOpt,
    SubjectsOpt,
    ThreadsOpt,
    check_choice,
    check_training_options,
    leaves_no_new_folder,
    named_options,
    parse_integers,
    resume_hint,
    say,
    user_errors,
)
from brainrecon.config.choices import BACKBONE_WEIGHTS, ROIS
from brainrecon.config.networks import either
from brainrecon.errors import UserError


@user_errors
def config_show(
    stage: str = typer.Option(..., "--stage", metavar="STAGE", help="encoder or decoder."),
    modality: str = ModalityOpt, config: str = ConfigOpt, sets: Optional[List[str]] = Sets,
):
    """Print the fully resolved YAML a run would use (the text it writes to config.yaml); it loads back with
    --config."""
    from brainrecon.config import load_config, to_yaml
    sys.stdout.write(to_yaml(load_config(stage, modality, config, sets)))


def _config(stage: str, modality: str, config: str, sets, options: dict, extra: dict):
    """The resolved config: named options below `--set`, each out-of-range value refused naming its flag."""
    from brainrecon.config import load_config
    _adapt_from_group_config(stage, modality, config, sets, options)
    values, flags = named_options(sets, options, extra)
    return load_config(stage, modality, config, sets, values, flags)


def _adapt_from_group_config(stage: str, modality: str, config: str, sets, options: dict) -> None:
    """`--config GROUP_RUN --init-from GROUP_RUN --subject N`: the group's settings, not its subject list. The
    data.subjects that --config brings is cleared (said in one line); one typed with --subjects or --set is kept, and
    refused with --init-from by the config's own check."""
    from brainrecon.config import load_config
    typed = {item.split("=", 1)[0].strip() for item in sets or []}
    if options["train.init_from"][1] is None or options["data.subjects"][1] is not None or "data.subjects" in typed:
        return
    group = load_config(stage, modality, config).data.subjects
    if group:
        options["data.subjects"] = ("--init-from", [])
        say(f"--config {config}: its data.subjects {','.join(map(str, group))} left out: --init-from adapts that "
            f"group to subject {options['data.subject'][1]} alone (the other settings are kept)")


def _common(subject, roi, epochs, device, threads, pairs, subjects, init_from, seed) -> dict:
    group = list(parse_integers("--subjects", subjects)) if subjects is not None else None
    if init_from is not None and not (Path(init_from) / "best.pt").is_file():
        raise UserError(f"--init-from {init_from}: no best.pt there; give a train-encoder/train-decoder --out folder "
                        "trained with --subjects")
    return {"data.subject": ("--subject", subject), "data.roi": ("--roi", roi), "train.epochs": ("--epochs", epochs),
            "train.device": ("--device", device), "train.threads": ("--threads", threads),
            "data.pairs": ("--pairs", pairs), "data.subjects": ("--subjects", group), "train.seed": ("--seed", seed),
            "train.init_from": ("--init-from", str(Path(init_from).resolve()) if init_from is not None else None)}


@user_errors
def train_encoder_cmd(
    modality: str = ModalityOpt, subject: int = SubjectOpt, data_dir: Optional[Path] = DataDir,
    config: str = ConfigOpt, roi: Optional[str] = RoiOpt, epochs: Optional[int] = EpochsOpt,
    pairs: Optional[float] = PairsOpt, subjects: Optional[str] = SubjectsOpt, init_from: Optional[Path] = InitFromOpt,
    backbone_weights: Optional[str] = typer.Option(None, "--backbone-weights", metavar="WEIGHTS",
                                                   help=f"{either(BACKBONE_WEIGHTS)} (default: the config's)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL", help="deep (the paper's trained "
                                        "read-out) or ridge (not in the paper: a closed-form read-out of the frozen "
                                        "backbone, a penalty per voxel by cross-validation); default: the config's, "
                                        "deep in every preset."),
    out: Path = typer.Option(Path("runs/encoder"), "--out", metavar="DIR", help="Folder for the run: checkpoints, "
                             "config.yaml, metrics and TensorBoard logs."),
    seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt, sets: Optional[List[str]] = Sets,
    device: Optional[str] = DeviceOpt, threads: Optional[int] = ThreadsOpt,
):
    """Train the image -> voxels encoder (or fit a ridge read-out on its frozen backbone)."""
    check_choice("--backbone-weights", backbone_weights, BACKBONE_WEIGHTS)
    check_choice("--model", model, ("deep", "ridge"))
    root = check_training_options(modality, roi, device, data_dir)
    options = {**_common(subject, roi, epochs, device, threads, pairs, subjects, init_from, seed),
               "model.backbone_weights": ("--backbone-weights", backbone_weights), "model.kind": ("--model", model)}
    cfg = _config("encoder", modality, config, sets, options, {})
    from brainrecon.train.encoder import train_encoder
    with leaves_no_new_folder(out):
        m = train_encoder(cfg, root, out, resume=resume, resume_hint=resume_hint())
    fitted = f"{m['epochs']} epochs" if cfg.model.kind == "deep" else "ridge read-out, closed form"
    fitted += ", the fit already in --out kept" if m.get("kept") else ""
    say(f"encoder: median test r {m['median_r']:.3f}, r/ceiling {m['median_r_over_ceiling']:.2f} "
        f"({fitted}, {m['seconds']:.0f}s) -> {out}")


@user_errors
def train_decoder_cmd(
    modality: str = ModalityOpt, subject: int = SubjectOpt, data_dir: Optional[Path] = DataDir,
    config: str = ConfigOpt,
    encoder: Optional[Path] = typer.Option(None, "--encoder", metavar="DIR", help="The train-encoder --out folder "
                                           "(the self-supervised cycles need it)."),
    model: str = typer.Option("deep", "--model", metavar="MODEL", help="deep or ridge."),
    no_self_supervision: bool = typer.Option(False, "--no-self-supervision", metavar="", help="Train on the pairs "
                                             "only (the ED and DE cycles off)."),
    roi: Optional[str] = typer.Option(None, "--roi", metavar="ROI", help=f"Voxels used: {', '.join(ROIS)} (default "
                                      "VC); the --encoder run's ROI must match."),
    epochs: Optional[int] = EpochsOpt, pairs: Optional[float] = PairsOpt, subjects: Optional[str] = SubjectsOpt,
    init_from: Optional[Path] = InitFromOpt,
    out: Path = typer.Option(Path("runs/decoder"), "--out", metavar="DIR", help="Folder for the run: checkpoints, "
                             "config.yaml, metrics and TensorBoard logs; reconstruct reads it."),
    seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt, sets: Optional[List[str]] = Sets,
    device: Optional[str] = DeviceOpt, threads: Optional[int] = ThreadsOpt,
):
    """Train the voxels -> image decoder (supervised + self-supervised), or the ridge baseline."""
    check_choice("--model", model, ("deep", "ridge"))
    root = check_training_options(modality, roi, device, data_dir)
    extra = {"model": {"kind": model}, **({"train": {"self_supervision": False}} if no_self_supervision else {})}
    options = _common(subject, roi, epochs, device, threads, pairs, subjects, init_from, seed)
    cfg = _config("decoder", modality, config, sets, options, extra)
    from brainrecon.train.decoder import train_decoder
    with leaves_no_new_folder(out):
        m = train_decoder(cfg, root, out, encoder_run=encoder, resume=resume, resume_hint=resume_hint())
    chosen = ("the fit already in --out kept; " if m.get("kept") else "") if model == "ridge" else \
        f"best.pt: {m['selected_by']}; "
    say(f"decoder ({model}): test pixcorr {m['test_pixcorr']:.3f} ({chosen}"
        f"{m['seconds']:.0f}s) -> {out}; next: brainrecon reconstruct {out}"
        + (f" --subject N (N one of {', '.join(m['subjects'])})" if len(m.get("subjects", ())) > 1 else ""))
