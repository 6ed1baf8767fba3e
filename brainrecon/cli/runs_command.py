"""The runs command: a table of the run folders under a folder (brainrecon.evaluation.run_listing)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from brainrecon.cli.common import out_console, user_errors
from brainrecon.errors import UserError

COLUMNS = (("run", "name"), ("stage", "stage"), ("mod.", "modality"), ("subject", "subjects"), ("pairs", "pairs"),
           ("state", "state"), ("result", "result"))


def runs_table(rows) -> Table:
    """The listing as a borderless table that fits 80 columns (a long run name folds onto a second line)."""
    t = Table(box=None, pad_edge=False, header_style="bold")
    for header, _ in COLUMNS:
        t.add_column(header, no_wrap=header != "run", overflow="fold")
    for r in rows:
        t.add_row(*(getattr(r, field) for _, field in COLUMNS))
    return t


def print_runs(rows, folder: Path, console: Console = out_console) -> None:
    console.print(runs_table(rows))
    console.print(f"{len(rows)} run(s) in {folder}; result: median test r (encoder), test PixCorr (decoder, ridge), "
                  "a group's the mean over its subjects", highlight=False)


@user_errors
def runs(
    folder: Path = typer.Argument(Path("runs"), metavar="DIR", help="Folder holding run folders (train-encoder / "
                                  "train-decoder --out), searched two levels down.", show_default=False),
):
    """List the run folders under DIR (default ./runs): stage, modality, subjects, training pairs, whether the run
    finished, and its headline metric."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; give the folder holding your runs (default ./runs), e.g. "
                        "`brainrecon runs demo-out`")
    from brainrecon.evaluation.run_listing import list_runs
    rows = list_runs(folder)
    if not rows:
        out_console.print(f"no run folders in {folder} or two levels below it (a run folder holds config.yaml and "
                          "best.pt, last.pt or metrics.json)", highlight=False)
        return
    print_runs(rows, folder)
