"""The command table: every subcommand, in the order `brainrecon --help` lists them, with its one-line summary and an
example shown at the end of its --help. `build_app()` registers them on a Typer app; nothing registers itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

import brainrecon.cli.data_commands as data_commands
import brainrecon.cli.demo_command as demo_command
import brainrecon.cli.evaluate_commands as evaluate_commands
import brainrecon.cli.export_command as export_command
import brainrecon.cli.import_command as import_command
import brainrecon.cli.runs_command as runs_command
import brainrecon.cli.train_commands as train_commands
from brainrecon.cli.common import out_console

SUMMARY = "Reconstruct what a person saw (image and depth) from fMRI, with self-supervision."


@dataclass(frozen=True)
class Command:
    name: str
    function: Callable
    summary: str
    """One line for the command list of `brainrecon --help` (the docstring's first paragraph heads its own --help)."""
    example: str


COMMANDS = (
    Command("fetch-data", data_commands.fetch_data_cmd, "Download the public release: verified, cached, resumable.",
            "brainrecon fetch-data --only fmri --subjects 3"),
    Command("simulate", data_commands.simulate, "Write a SIMULATED subject in the release formats.",
            "brainrecon simulate --out sim --n-voxels 1500 --resolution 64"),
    Command("convert-god", data_commands.convert_god_cmd, "Convert the public GOD fMRI and photos to the release "
            "formats.", "brainrecon convert-god --subject 3 --images ~/god/images"),
    Command("convert-nsd", data_commands.convert_nsd_cmd, "Convert one NSD subject to the release formats.",
            "brainrecon convert-nsd --subject 1 --sessions 1-5"),
    Command("import-arrays", import_command.import_arrays_cmd, "Write your own fMRI arrays and images in the release "
            "formats.", "brainrecon import-arrays --train-fmri train.npy --train-images train_images/ --test-fmri "
            "test.npy --test-images test_images/ --out mydata"),
    Command("make-depth", data_commands.make_depth_cmd, "Run MiDaS depth over an image tree or a stimulus npz.",
            "brainrecon make-depth --images imagenet/val --out depth/val"),
    Command("train-encoder", train_commands.train_encoder_cmd, "Train the image -> voxels encoder.",
            "brainrecon train-encoder --subject 3 --out runs/enc"),
    Command("train-decoder", train_commands.train_decoder_cmd, "Train the voxels -> image decoder, or ridge.",
            "brainrecon train-decoder --encoder runs/enc --out runs/dec"),
    Command("reconstruct", evaluate_commands.reconstruct, "Decode fMRI into images and depth with a trained decoder.",
            "brainrecon reconstruct runs/dec"),
    Command("evaluate", evaluate_commands.evaluate, "n-way identification of reconstructions, with bootstrap CIs.",
            "brainrecon evaluate runs/dec runs/ridge --ways 2,10"),
    Command("classify", evaluate_commands.classify, "Large-scale semantic classification of reconstructions.",
            "brainrecon classify runs/dec --class-images ~/imagenet/train"),
    Command("runs", runs_command.runs, "List run folders: stage, subjects, pairs, finished or not, result.",
            "brainrecon runs runs/"),
    Command("export", export_command.export_cmd, "Write a trained run as a folder to share (Hugging Face layout).",
            "brainrecon export runs/dec models/dec && huggingface-cli upload me/dec models/dec"),
    Command("demo", demo_command.demo, "The whole method on a SIMULATED subject, on a CPU (about 4 min).",
            "brainrecon demo --out demo-out --seed 1"),
)
CONFIG_COMMANDS = (
    Command("show", train_commands.config_show, "Print the resolved YAML a run would use.",
            "brainrecon config show --stage decoder --config demo --set train.lr=1e-4"),
)


class PlainHelpFlag:
    """--help as a plain flag: typer >= 0.26 prints a value type beside every option, flags too (the options here say
    `metavar=""` for that; this does the same for the help option click adds)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: typer >= 0.26 writes a required one as `{RUN}` in the usage line and
    its Python type (`<path>`, `<list[Path]>`) beside it; here `RUN`, `RECONS...`, `[DIR]`."""

    def display_type_rich(self, ctx):
        return None

    def get_usage_pieces(self, ctx) -> list[str]:
        name = self.metavar or self.name.upper()
        name = name if self.required else f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]


class BrainreconCommand(PlainHelpFlag, TyperCommand):
    """Typer's command with a plain --help flag and plain arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = PlainArgument


class BrainreconGroup(PlainHelpFlag, TyperGroup):
    """Typer's command group with a plain --help flag."""


def show_version(value: bool) -> None:
    """-V/--version: brainrecon (with its git commit in a checkout), torch and CUDA, and the device `--device auto`
    would use."""
    if not value:
        return
    from brainrecon.version import version_string
    out_console.print(f"brainrecon {version_string()}", highlight=False)
    try:
        import torch
    except ImportError:                                          # pragma: no cover - torch is a dependency
        out_console.print("torch: not installed", highlight=False)
        raise typer.Exit()
    from brainrecon.runtime import pick_device
    cuda = (f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build (no CUDA)")
    usable = f", {torch.cuda.device_count()} GPU(s) visible" if torch.version.cuda else ""
    out_console.print(f"torch {torch.__version__}, {cuda}{usable}\ndevice (--device auto): {pick_device('auto')}",
                      highlight=False)
    raise typer.Exit()


def main_options(version: bool = typer.Option(False, "--version", "-V", metavar="", callback=show_version,
                                              is_eager=True, help="Print the versions of brainrecon, torch and "
                                              "CUDA, and the device it would use, and exit.")):
    """Reconstruct what a person saw (image and depth) from fMRI, with self-supervision."""


def _register(app: typer.Typer, table) -> None:
    for c in table:
        app.command(c.name, cls=BrainreconCommand, short_help=c.summary, epilog=f"Example: {c.example}")(c.function)


def build_app() -> typer.Typer:
    """The `brainrecon` app from the tables above."""
    settings = {"help_option_names": ["-h", "--help"]}
    app = typer.Typer(help=SUMMARY, cls=BrainreconGroup, no_args_is_help=True, rich_markup_mode="rich",
                      pretty_exceptions_show_locals=False, add_completion=False, context_settings=settings)
    app.callback()(main_options)
    _register(app, COMMANDS)
    config_app = typer.Typer(help="See the resolved configuration a run would use.", cls=BrainreconGroup,
                             no_args_is_help=True, rich_markup_mode="rich", context_settings=settings)
    _register(config_app, CONFIG_COMMANDS)
    app.add_typer(config_app, name="config")
    return app
