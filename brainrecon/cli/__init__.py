"""The command line: one thin command per subcommand over library functions (brainrecon.cli.*_commands), registered
from the table in brainrecon.cli.commands.

UserError (bad input a user can fix, a full disk) -> one line on stderr, exit 2; click's own usage errors (an unknown
option, `--epochs abc`) the same. Ctrl-C in training -> checkpoint kept, exit 130; SIGTERM / SIGUSR1 (preemption) ->
the same, exit 143. Bugs keep their traceback.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from brainrecon.cli.commands import build_app
from brainrecon.cli.common import err_console, out_console, print_error

__all__ = ["app", "main", "main_entry"]

app = build_app()


def _click_errors() -> tuple[type, ...]:
    """The errors click raises for a usage mistake: typer >= 0.29 runs its own click, whose exceptions derive from
    typer.TyperException; older typer runs on click."""
    kinds: list[type] = [typer.TyperException] if hasattr(typer, "TyperException") else []
    try:
        import click
        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kinds)


def usage_message(error) -> str:
    """One line for a usage error: the flag in front of a bad value's message (the value parsers in cli.common put
    the value as typed in it), and where to read the usage."""
    param, ctx = getattr(error, "param", None), getattr(error, "ctx", None)
    message = getattr(error, "message", None) or error.format_message()
    close = sorted(getattr(error, "possibilities", None) or ())    # a mistyped option: click's close matches
    if close:
        message += f"; did you mean {close[0]}?" if len(close) == 1 else f"; did you mean one of {', '.join(close)}?"
    if param is not None:
        is_option = getattr(param, "param_type_name", "") == "option" and param.opts
        name = param.opts[0] if is_option else (param.metavar or param.name.upper())
        if name not in message:
            message = f"{name} {message}" if message.startswith("'") else f"{name}: {message}"
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return message + hint


def main(argv: Optional[List[str]] = None) -> int:
    """The `brainrecon` entry point: every error a user can fix is one line, `error: ...` on stderr with exit 2."""
    try:
        result = app(args=list(sys.argv[1:] if argv is None else argv), standalone_mode=False)
    except _click_errors() as e:
        if type(e).__name__ == "NoArgsIsHelpError":   # bare `brainrecon` or `brainrecon config`: the help, once
            shown = e.format_message()                  # typer's rich help printed itself while the error was made
            if shown.strip():
                out_console.print(shown, highlight=False, markup=False)
            return 0
        print_error(usage_message(e))
        return getattr(e, "exit_code", 2) or 2
    except typer.Abort:
        err_console.print("interrupted: stopped by the user", highlight=False, markup=False)
        return 130
    return result if isinstance(result, int) else 0


def main_entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())
