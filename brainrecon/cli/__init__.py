"""The command line: one thin command per subcommand over library functions (brainrecon.cli.*_commands).

UserError (bad input a user can fix, a full disk) -> one line on stderr, exit 2; click's own usage errors the same.
Ctrl-C in training -> checkpoint kept, exit 130; SIGTERM / SIGUSR1 (preemption) -> the same, exit 143. Bugs keep
their traceback.
"""

from __future__ import annotations

import sys
from typing import List, Optional

# importing a commands module registers its commands, in the order --help lists them
from brainrecon.cli import data_commands  # noqa: F401, I001
from brainrecon.cli import train_commands  # noqa: F401
from brainrecon.cli import evaluate_commands  # noqa: F401
from brainrecon.cli import demo_command  # noqa: F401
from brainrecon.cli.common import app, err_console, out_console

__all__ = ["app", "main", "main_entry"]


def main(argv: Optional[List[str]] = None) -> int:
    """The `brainrecon` entry point: click's own usage errors (an unknown option, `--epochs abc`) become the same
    one line as every other bad input, `error: ...` on stderr with exit 2, instead of a boxed panel."""
    import click
    try:
        result = app(args=argv, standalone_mode=False)
    except click.exceptions.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:   # bare `brainrecon` or `brainrecon config`
            out_console.print(e.ctx.get_help(), highlight=False, markup=False)
            return 0
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        from rich.markup import escape
        err_console.print(f"[bold red]error:[/] {escape(e.format_message() + hint)}", highlight=False,
                          soft_wrap=True)
        return 2
    except click.exceptions.Abort:
        err_console.print("interrupted: stopped by the user", highlight=False, markup=False)
        return 130
    return result if isinstance(result, int) else 0


def main_entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())
