"""Every file write goes through here: a temp file in the same folder, then `os.replace`.

A crash or Ctrl-C therefore never leaves a file that looks complete; a resumed run reads only complete files. A write
that fails (a full disk, a read-only or unwritable folder) removes its temp file, leaves the previous file as it was,
and becomes one WriteError naming the file and the free space. Temp files left by a killed process
(`.<name>.<random>.tmp`) are never read, and `remove_stale_temps` deletes them when a run takes its folder's lock.
Every file gets the mode the umask gives a new file (0644 under umask 022), as `open` would: `mkstemp` alone makes
0600, which would hide checkpoints and converted data in a shared folder from colleagues.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

from brainrecon.errors import WriteError

TEMP_GLOB = ".*.tmp"
_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """0o666 less the process's umask (read without changing it for other threads)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _temp(path: Path) -> Path:
    """A new temp file beside `path`, with the umask's mode."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(name)


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2 ** 20:.1f} MiB free there"
    except OSError:
        return "free space unknown"


def write_error(path: Path, e: OSError) -> WriteError:
    fix = {errno.ENOSPC: "free some space or write to another folder",
           errno.EDQUOT: "free some of your quota or write to another folder",
           errno.EROFS: "the file system is read-only: write to another folder",
           errno.EACCES: "you may not write there: fix the folder's permissions or write to another folder"}
    reason = e.strerror or type(e).__name__
    return WriteError(f"{path}: could not write it ({reason}; {_free_space(path.parent)}); the previous file, if any, "
                      f"is unchanged; {fix.get(e.errno, 'write to another folder')}")


def write_atomic(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` and move the result to `path` only if it returned without error."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp(path)
        writer(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def write_all_atomic(writers: list[tuple[str | Path, Callable[[Path], None]]]) -> list[Path]:
    """Several files that belong together: every `writer(tmp)` runs first, and only when all have returned are the
    temps moved into place (one `os.replace` each, in order). A failure in any writer leaves every target as it was."""
    paths = [Path(p) for p, _ in writers]
    temps: list[Path] = []
    current = paths[0] if paths else Path(".")
    try:
        for path, (_, writer) in zip(paths, writers):
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            temps.append(_temp(path))
            writer(temps[-1])
        for path, tmp in zip(paths, temps):
            current = path
            os.replace(tmp, path)
    except OSError as e:
        raise write_error(current, e) from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return paths


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text))


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files that a killed writer left in `folder` (call it only while holding the folder's lock)."""
    removed = []
    for p in Path(folder).glob(TEMP_GLOB):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
