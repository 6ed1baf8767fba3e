"""The demo command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from brainrecon.cli.common import ModalityOpt, ThreadsOpt, _choice, app, err_console, out_console, user_errors

from brainrecon.cli.evaluate_commands import print_comparisons, print_tables


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
    """The whole method on a built-in SIMULATED subject, on a CPU: about 4 minutes on 2 cores (--full: about 35)."""
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
