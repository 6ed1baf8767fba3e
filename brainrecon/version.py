"""Which code is running: the release number, and the git commit when brainrecon runs from its own git checkout.

`version_string()` is what `brainrecon -V` prints, every run's metrics.json records (through `runtime.record()`) and
every exported model card names: "0.2.0" from an installed wheel or sdist, "0.2.0 (git 69e1d51)" from a clean
checkout, "0.2.0 (git 69e1d51 + local changes)" when brainrecon/, configs/ or pyproject.toml differ from that commit.
Git is asked only about the checkout this package sits in (never a repository that merely contains an installed
copy), and its absence or failure gives the plain number.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__version__ = "0.2.0"

CHECKOUT = Path(__file__).resolve().parents[1]
"""Where brainrecon's own checkout would be: the folder holding brainrecon/ and pyproject.toml."""
CODE_PATHS = ("brainrecon", "configs", "pyproject.toml")
"""What makes up the running code: changes elsewhere (docs, tests, benchmarks) do not mark the version."""


def _git(root: Path, *args: str) -> str | None:
    """The output of `git -C root args`, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(root: Path | None = None) -> tuple[str, bool] | None:
    """(short commit, has local changes) of brainrecon's own checkout; None outside one or without git."""
    root = Path(root) if root is not None else CHECKOUT
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None
    commit = _git(root, "rev-parse", "--short", "HEAD")
    if not commit:
        return None
    status = _git(root, "status", "--porcelain", "--", *CODE_PATHS)
    return commit, bool(status)


@functools.lru_cache(maxsize=1)
def version_string() -> str:
    """"0.2.0", or "0.2.0 (git <commit>)" / "0.2.0 (git <commit> + local changes)" from a git checkout."""
    found = git_commit()
    if found is None:
        return __version__
    commit, dirty = found
    return f"{__version__} (git {commit}{' + local changes' if dirty else ''})"
