"""The command line: one thin command per subcommand over library functions (brainrecon.cli.*_commands).

UserError (bad input a user can fix, a full disk) -> one line on stderr, exit 2; click's own usage errors the same.
Ctrl-C in training -> checkpoint kept, exit 130; SIGTERM / SIGUSR1 (preemption) -> the same, exit 143. Bugs keep
their traceback.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

# importing a commands module registers its commands, in the order --help lists them
from brainrecon.cli import data_commands  # noqa: F401, I001
from brainrecon.cli import train_commands  # noqa: F401
from brainrecon.cli import evaluate_commands  # noqa: F401
from brainrecon.cli import demo_command  # noqa: F401
from brainrecon.cli.common import app, err_console, out_console

__all__ = ["app", "main", "main_entry"]


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-error classes, abort classes): typer >= 0.29 carries its own copy of click, older ones use click."""
    usage = {c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"}
    aborts = {typer.Abort}
    try:
        import click
        usage.add(click.exceptions.UsageError)
        aborts.add(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(usage), tuple(aborts)


def _typed(argv: list[str], opts: list[str]) -> str | None:
    """The value the user typed after one of an option's names (`--epochs abc` or `--epochs=abc`)."""
    for k, token in enumerate(argv):
        for opt in opts:
            if token == opt and k + 1 < len(argv):
                return argv[k + 1]
            if token.startswith(opt + "="):
                return token[len(opt) + 1:]
    return None


def main(argv: Optional[List[str]] = None) -> int:
    """The `brainrecon` entry point: click's own usage errors (an unknown option, `--epochs abc`) become the same
    one line as every other bad input, `error: ...` on stderr with exit 2, instead of a boxed panel."""
    from rich.markup import escape
    usage_errors, aborts = _click_errors()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, standalone_mode=False)
    except usage_errors as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:   # bare `brainrecon` or `brainrecon config`
            out_console.print(ctx.get_help(), highlight=False, markup=False)
            return 0
        param = getattr(e, "param", None)
        typed = _typed(args, list(param.opts)) if param is not None and getattr(param, "opts", None) else None
        message = (f"{param.opts[0]} {typed!r}: {e.message}" if typed is not None else e.format_message())
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err_console.print(f"[bold red]error:[/] {escape(message + hint)}", highlight=False, soft_wrap=True)
        return 2
    except aborts:
        err_console.print("interrupted: stopped by the user", highlight=False, markup=False)
        return 130
    return result if isinstance(result, int) else 0


def main_entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())
