"""export: a trained run as a folder to share, through brainrecon.train.export.export_run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from brainrecon.cli.common import check_run_folder, leaves_no_new_folder, out_console, user_errors
from brainrecon.errors import UserError


@user_errors
def export_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="A train-encoder or train-decoder --out folder (deep, ridge, "
                               "or several subjects)."),
    out: Path = typer.Argument(..., metavar="OUT", help="A new or empty folder (or an earlier export of it, "
                               "whose files are replaced)."),
    evaluation: Optional[Path] = typer.Option(None, "--evaluation", metavar="DIR", help="A `brainrecon evaluate "
                                              "--out` folder (or its identification.csv) that scored RUN: its rows, "
                                              "with their CIs, go into the model card."),
):
    """Write a run's best network as a self-contained folder in the Hugging Face Hub's layout: model.safetensors (no
    pickle), config.json, metrics.json and a model card (README.md), without the training machine's paths. Publish it
    with `huggingface-cli upload OWNER/NAME OUT`; load it with `reconstruct OUT --out DIR`, `load_decoder(OUT)` or
    hf://OWNER/NAME."""
    check_run_folder(run, "train-decoder / train-encoder")
    if evaluation is not None and not evaluation.exists():
        raise UserError(f"--evaluation {evaluation}: no such folder or file; give a `brainrecon evaluate --out` folder")
    from brainrecon.train.export import export_run
    with leaves_no_new_folder(out):
        folder = export_run(run, out, evaluation)
    out_console.print(f"exported: {folder}\nshare it: huggingface-cli upload OWNER/NAME {folder}\nload it: "
                      f"brainrecon reconstruct {folder} --out DIR", highlight=False)
