"""The demo command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from brainrecon.cli.common import (
    ModalityOpt,
    ThreadsOpt,
    check_choice,
    check_device,
    err_console,
    integer,
    leaves_no_new_folder,
    out_console,
    resume_hint,
    user_errors,
)
from brainrecon.cli.tables import print_comparisons, print_tables
from brainrecon.config.choices import MODALITIES


@user_errors
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", metavar="DIR", help="Folder for the simulated data, the runs "
                             "and the evaluation; a rerun reuses only the stages made with the same settings."),
    modality: str = ModalityOpt,
    full: bool = typer.Option(False, "--full", metavar="", help="The converged demo: more voxels, unpaired images and "
                              "epochs (about 35 min on 2 CPU cores without native bf16)."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", parser=integer(0), help="Training seed of both "
                                       "networks (default 0, the preset's; the simulated subject stays the same): "
                                       "seeds 1 and 2 show how much another training run moves the numbers."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps "
                                         "(default: the preset's, auto)."),
    threads: Optional[int] = ThreadsOpt,
):
    """The whole method on a built-in SIMULATED subject, on a CPU: about 4 minutes on 2 cores (--full: about 35)."""
    check_choice("--modality", modality, MODALITIES)
    check_device("--device", device)
    from brainrecon.demo import run_demo
    with leaves_no_new_folder(out):
        result = run_demo(out, modality, "full" if full else "default",
                          say=lambda s: err_console.print(s, highlight=False), threads=threads or 0,
                          resume_hint=resume_hint(add_resume=False), seed=seed, device=device)
    print_tables(result["records"], [])
    print_comparisons(result["comparisons"])
    out_console.print(f"gallery: {result['gallery']}\ndeep beside ridge: {result['gallery_vs_ridge']}\n"
                      f"identification plot: {result['plot']}\n"
                      "(simulated subject: procedural scenes and simulated voxels, not real fMRI)")
