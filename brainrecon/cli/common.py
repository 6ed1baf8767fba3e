"""What every command shares: the consoles, the options several commands take, and the checks that turn a bad value
into one line naming the flag as typed and the fix (made before torch is imported, so they answer at once)."""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from brainrecon.config.choices import MODALITIES, ROIS
from brainrecon.errors import Interrupted, UserError

WIDTH = shutil.get_terminal_size((140, 24)).columns  # piped output is not cut at 80 columns
out_console = Console(width=WIDTH)
err_console = Console(stderr=True, width=WIDTH)


# ---------------------------------------------------------------------------------------------------------------
# Numbers as typed: an option's own parser, so that a bad value is refused naming the flag and the value


def integer(minimum: int | None = None) -> Callable[[Any], int]:
    """A typer `parser=` for a whole number of at least `minimum`: `--epochs abc` and `--epochs 0` are refused with
    the value as typed (the entry point puts the flag in front)."""
    def parse(value: Any) -> int:
        text = str(value).strip()
        try:
            number = value if isinstance(value, int) else int(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not an integer") from None
        if minimum is not None and number < minimum:
            raise typer.BadParameter(f"{text!r} is out of range: it must be at least {minimum}")
        return number
    return parse


def number(low: float | None = None, high: float | None = None, high_open: bool = False,
           low_open: bool = False) -> Callable[[Any], float]:
    """A typer `parser=` for a number in [low, high] (open at either end with `low_open` / `high_open`); 1e-3 as
    people write it."""
    def parse(value: Any) -> float:
        text = str(value).strip()
        try:
            x = float(value if isinstance(value, (int, float)) else text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
        above = high is not None and (x >= high if high_open else x > high)
        below = low is not None and (x <= low if low_open else x < low)
        if below or above:
            bound = (f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}" if high is not None
                     else f"{'above' if low_open else 'at least'} {low}")
            raise typer.BadParameter(f"{text!r} is out of range: it must be {'in ' if high is not None else ''}"
                                     f"{bound}")
        return x
    return parse


# ---------------------------------------------------------------------------------------------------------------
# Options several commands take (a metavar that reads as a word; flags show none)

DataDir = typer.Option(None, "--data-dir", metavar="DIR", help="Data folder (else $BRAINRECON_DATA, else the per-user "
                       "cache).")
Sets = typer.Option(None, "--set", metavar="KEY=VALUE", help="Config override section.key=value, e.g. "
                    "train.lr=1e-3 (repeatable).")
ConfigOpt = typer.Option("paper", "--config", metavar="CONFIG", help="Preset name(s) (paper, demo, demo,fast), a YAML "
                         "file, or a run folder (its config.yaml).")
DeviceOpt = typer.Option(None, "--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (overrides "
                         "train.device).")
DeviceAutoOpt = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")
ModalityOpt = typer.Option("rgbd", "--modality", metavar="MODALITY", help="rgb, depth or rgbd.")
SubjectOpt = typer.Option(3, "--subject", metavar="N", parser=integer(), help="Subject number: reads sbj_<N>.npz in "
                          "the data folder (GOD: 1-5; a convert-nsd folder: its NSD subject, 1-8).")
RoiOpt = typer.Option(None, "--roi", metavar="ROI", help=f"Voxels used: {', '.join(ROIS)} (default VC).")
EpochsOpt = typer.Option(None, "--epochs", metavar="N", parser=integer(), help="Epochs to train, at least 1 (default: "
                         "the config's).")
PairsOpt = typer.Option(None, "--pairs", metavar="N", parser=number(0), help="Training stimuli to use: a count "
                        "(150) or a fraction (0.125); 0 = all (default: the config's data.pairs, all). A seeded draw "
                        "of whole stimuli (train.seed), recorded in the run's pairs.json.")
SubjectsOpt = typer.Option(None, "--subjects", metavar="N,N,...", help="Train one model for several subjects (e.g. "
                           "1,2,4,5): shared image pathway / trunk, per-subject voxel layers; replaces --subject. Each "
                           "subject's files are found in --data-dir (GOD: every sbj_N.npz beside one stimulus file) or "
                           "in the one folder inside it holding sbj_N.npz (convert-nsd's nsd_subjNN). Subjects of one "
                           "stimulus set must have seen the same images (checked by content); NSD conversions may "
                           "differ, each training on its own pairs.")
InitFromOpt = typer.Option(None, "--init-from", metavar="RUN", help="Start from a run of this stage trained on several "
                           "subjects (--subjects) and adapt it to --subject: shared parts loaded, the subject's own "
                           "layers initialised from the group, all fine-tuned.")
SeedOpt = typer.Option(None, "--seed", metavar="N", parser=integer(0), help="Training seed (train.seed; default: the "
                       "config's, 0): the weights' initialisation, the batches and augmentation, the validation split, "
                       "ridge's CV folds and the --pairs draw. Give an encoder and its decoder the same seed: they "
                       "then keep the same pairs.")
ResumeOpt = typer.Option(False, "--resume", metavar="", help="Continue the run in --out from its last checkpoint "
                         "(a ridge run: keep its fit if the config and data match).")
ThreadsOpt = typer.Option(None, "--threads", metavar="N", parser=integer(), help="CPU threads for torch (default: "
                          "OMP_NUM_THREADS, else the CPUs this process may use, split among torchrun's ranks on this "
                          "host).")


# ---------------------------------------------------------------------------------------------------------------
# Errors and output


def user_errors(fn):
    """Turn a UserError into one line + exit 2, an interrupt into exit 130 (143 for SIGTERM)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print_error(str(e))
            raise typer.Exit(code=2) from None
        except (Interrupted, KeyboardInterrupt) as e:
            err_console.print(f"[yellow]interrupted:[/] {escape(str(e) or 'stopped by the user')}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(code=getattr(e, "exit_code", 130)) from None
    return wrapper


def print_error(message: str) -> None:
    """`error: ...` on stderr, one line however long."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """Print on rank 0 only (under torchrun every rank runs the command), one line however long."""
    if os.environ.get("RANK", "0") == "0":
        out_console.print(message, soft_wrap=True)


def resume_hint(add_resume: bool = True) -> str:
    """How to continue an interrupted run, for the trainers' messages: this command line, with --resume added when
    `add_resume` (the demo reruns as it is: it resumes the stage that was cut short). Outside the brainrecon command
    (e.g. a test's CliRunner) just `--resume`."""
    argv = list(sys.argv)
    if not argv or "brainrecon" not in (Path(argv[0]).name, Path(argv[0]).parent.name):  # the script or -m brainrecon
        return "--resume"
    args = argv[1:] + (["--resume"] if add_resume and "--resume" not in argv else [])
    torchrun = " (under torchrun: the same torchrun line)" if int(os.environ.get("WORLD_SIZE", 1)) > 1 else ""
    return f"`{shlex.join(['brainrecon', *args])}`{torchrun}"


@contextlib.contextmanager
def leaves_no_new_folder(*paths: Optional[Path]) -> Iterator[None]:
    """On failure, remove the folders this command created on the way to `paths` (the folder itself and the parents
    it made), as long as they are empty: a failing command leaves no trace, and a file anything wrote is never
    deleted (a run that trained and then failed keeps its checkpoint)."""
    new: list[Path] = []
    for path in paths:
        if path is None:
            continue
        p = Path(path).absolute()
        while not p.exists() and p != p.parent:
            new.append(p)
            p = p.parent
    try:
        yield
    except BaseException:
        for folder in sorted(set(new), key=lambda f: len(f.parts), reverse=True):   # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


class LazyProgress:
    """A transient progress bar on stderr that opens at its first update: a check that fails before any progress
    prints its one line with nothing above it."""

    def __init__(self, description: str):
        self.description, self.bar, self.task = description, None, None

    def update(self, **fields) -> None:
        """rich's Progress.update fields: completed, total, advance, description."""
        if self.bar is None:
            from rich.progress import Progress
            self.bar = Progress(console=err_console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=None)
        self.bar.update(self.task, **fields)

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------------------------------------------------------
# Checks before any heavy import


def resolve_data_dir(flag: Optional[Path], must_exist: bool = True) -> Path:
    """--data-dir (else $BRAINRECON_DATA, else the per-user cache). A folder named by the user must exist: a typo is
    answered with that, not with a suggestion to download the release into it."""
    from brainrecon.data.layout import data_dir
    root = data_dir(flag)
    if flag and must_exist and not root.is_dir():
        raise UserError(f"--data-dir {flag}: folder does not exist; check the path, or download into it with "
                        f"`brainrecon fetch-data --data-dir {flag}`")
    return root


DEVICES = ("auto", "cpu", "cuda", "mps")


def check_choice(flag: str, value: Optional[str], choices) -> None:
    """A bad option value: one line naming the flag as typed and its choices."""
    if value is not None and value not in choices:
        raise UserError(f"{flag} {value!r}: choose one of {', '.join(choices)}")


def check_device(flag: str, value: Optional[str]) -> None:
    if value is not None and not (value in DEVICES or (value.startswith("cuda:") and value[5:].isdigit())):
        raise UserError(f"{flag} {value!r}: choose one of {', '.join(DEVICES)} (or cuda:N)")


def check_training_options(modality: str, roi: Optional[str], device: Optional[str], data_dir: Optional[Path]) -> Path:
    """The checks every training command makes before torch is imported; returns the data folder."""
    check_choice("--modality", modality, MODALITIES)
    check_choice("--roi", roi, ROIS)
    check_device("--device", device)
    return resolve_data_dir(data_dir)


def named_options(sets: Optional[list[str]], options: dict[str, tuple[str, Any]],
                  base: Optional[dict] = None) -> tuple[dict, dict[str, str]]:
    """Config values given by named options, `{key: (flag, value)}` with None for an option not given, added to a
    copy of `base` -> (the nested mapping for load_config's `extra`, `{key: flag}` so that a value out of range is
    refused naming the flag). An option and a `--set` of the same key would leave one of them unheard: refused."""
    extra: dict = copy.deepcopy(base or {})
    flags: dict[str, str] = {}
    typed = {item.split("=", 1)[0].strip(): item for item in sets or [] if "=" in item}
    for key, (flag, value) in options.items():
        if value is None:
            continue
        if key in typed:
            raise UserError(f"{flag} {value} and --set {typed[key]} both set {key}; give one of them")
        section, leaf = key.rsplit(".", 1)
        node = extra
        for part in section.split("."):
            node = node.setdefault(part, {})
        node[leaf] = value
        flags[key] = flag
    return extra, flags


def parse_integers(flag: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r} must be integers separated by commas, e.g. 2,5,10") from None


def check_run_folder(path: Path, made_by: str = "train-decoder") -> None:
    """A run folder named on the command line exists and is a folder."""
    if not path.exists():
        raise UserError(f"{path}: no such folder; give a `brainrecon {made_by} --out` folder")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run folder; give a `brainrecon {made_by} --out` folder")
