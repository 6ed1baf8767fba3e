"""One run per folder: a training run holds `<out>/run.lock` for its whole life.

The lock file names the holder (host, pid, start time) and is created atomically: its content is written to a temp
file first and then hard-linked into place, which fails if the lock exists, so no reader ever sees a half-written
lock. A second run on the same folder stops at once with one line naming the holder. A lock whose process no longer
runs on this host (a crash, a kill -9) is taken over with a warning; a lock from another host cannot be checked from
here, so the error says how to remove it. Under torchrun only rank 0 takes the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from pathlib import Path

from brainrecon.errors import UserError

LOCK = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:  # platforms without signal 0: assume it runs
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"])) if "started" in holder else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {when})"


def _try_create(path: Path, content: str) -> bool:
    tmp = path.with_name(f".{LOCK}.{os.getpid()}.tmp")
    tmp.write_text(content)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def acquire(run_dir: Path) -> Path:
    """Take the lock of `run_dir` or raise UserError naming the live holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    content = json.dumps(me)
    for _ in range(3):
        if _try_create(path, content):
            return path
        holder = _holder(path)
        if holder is None:  # released between our attempt and the read: try again
            continue
        if not holder:
            raise UserError(f"{path}: this run folder is locked by a run whose lock file cannot be read; if no run "
                            "uses the folder, delete the lock file and start again")
        if holder.get("host") != me["host"]:
            raise UserError(f"{run_dir}: another run holds this folder ({_describe(holder)}); wait for it, choose "
                            f"a new --out, or, if that run is dead, delete {path}")
        if _alive(int(holder.get("pid", -1))) and holder.get("pid") != me["pid"]:
            raise UserError(f"{run_dir}: another run is training in this folder ({_describe(holder)}); wait for it "
                            "or choose a new --out")
        if _holder(path) == holder:  # still the same dead holder: take it over
            warnings.warn(f"{path}: taking over the lock left by {_describe(holder)}, which no longer runs",
                          stacklevel=2)
            path.unlink(missing_ok=True)
    raise UserError(f"{run_dir}: could not take the run lock {path} (other runs keep starting here); choose a new "
                    "--out")


def release(path: Path) -> None:
    """Remove the lock if it is still ours."""
    holder = _holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def hold(run_dir: Path, is_main: bool = True):
    """Hold the run lock of `run_dir` for the body of the `with` (only on rank 0)."""
    if not is_main:
        yield None
        return
    path = acquire(run_dir)
    try:
        yield path
    finally:
        release(path)
