"""What every command shares: the Typer app, the consoles, the shared options, and the checks that turn a bad value
into one line naming the flag (before torch is imported)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from brainrecon.errors import Interrupted, UserError


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
ConfigOpt = typer.Option("paper", "--config", help="YAML path or preset name(s): paper | demo | demo,fast.")
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


def _training_options(modality: str, roi: Optional[str], device: Optional[str], data_dir: Optional[Path]) -> Path:
    """The checks every training command makes before torch is imported; returns the data folder."""
    from brainrecon.config import MODALITIES, ROIS
    _choice("--modality", modality, MODALITIES)
    _choice("--roi", roi, ROIS)
    _device("--device", device)
    return _data_dir(data_dir)


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


def _integers(flag: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r} must be integers separated by commas, e.g. 2,5,10") from None
