"""The training commands: config show, train-encoder, train-decoder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from brainrecon.cli.common import (ConfigOpt, DataDir, DeviceOpt, EpochsOpt, ModalityOpt, ResumeOpt, Sets, SubjectOpt,
                                   ThreadsOpt, _choice, _overrides, _say, _training_options, app, config_app,
                                   user_errors)


@config_app.command("show")
@user_errors
def config_show(
    stage: str = typer.Option(..., "--stage", help="encoder | decoder"), modality: str = ModalityOpt,
    config: str = ConfigOpt, sets: Optional[List[str]] = Sets,
):
    """Print the fully resolved YAML a run would use (the text it writes to config.yaml); loads back with --config."""
    from brainrecon.config import load_config, to_yaml
    sys.stdout.write(to_yaml(load_config(stage, modality, config, sets)))


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
    _choice("--backbone-weights", backbone_weights, ("release", "imagenet", "none"))
    root = _training_options(modality, roi, device, data_dir)
    from brainrecon.config import load_config
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
    _choice("--model", model, ("deep", "ridge"))
    root = _training_options(modality, roi, device, data_dir)
    from brainrecon.config import load_config
    from brainrecon.train.decoder import train_decoder
    extra = {"data": {"subject": subject, **({"roi": roi} if roi else {})}, "model": {"kind": model},
             **({"train": {"self_supervision": False}} if no_self_supervision else {})}
    cfg = load_config("decoder", modality, config, _overrides(sets, device, epochs, threads), extra)
    m = train_decoder(cfg, root, out, encoder_run=encoder, resume=resume)
    _say(f"decoder ({model}): test pixcorr {m['test_pixcorr']:.3f} (selected on the validation split; "
         f"{m['seconds']:.0f}s) -> {out}; next: brainrecon reconstruct {out}")
