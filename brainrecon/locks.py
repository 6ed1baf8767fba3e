"""One writer per folder: a training run holds `<out>/run.lock` for its whole life, and `fetch-data` / `convert-god`
hold `<data folder>/data.lock` while they write there (`hold_data`): a second process stops at once, naming the holder.

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

from brainrecon.atomic import remove_stale_temps
from brainrecon.errors import UserError

LOCK = "run.lock"
DATA_LOCK = "data.lock"


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
    command = f", {holder['command']}" if holder.get("command") else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {when}{command})"


def _try_create(path: Path, content: str) -> bool:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    tmp.write_text(content)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def acquire(run_dir: Path, name: str = LOCK, what: str = "run") -> Path:
    """Take the lock `name` of a folder or raise UserError naming the live holder. `what` says who holds such a lock
    ("run" for a training run folder, "data" for a data folder being written)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{run_dir}: cannot create this folder ({e.strerror}); choose another one") from None
    path = run_dir / name
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": _command()}
    content = json.dumps(me)
    other = "choose a new --out" if what == "run" else "use another data folder"
    holder_kind = "run" if what == "run" else "process"
    for _ in range(3):
        try:
            if _try_create(path, content):
                return path
        except OSError as e:
            raise UserError(f"{run_dir}: cannot write in this folder ({e.strerror}); fix its permissions or "
                            f"{other}") from None
        holder = _holder(path)
        if holder is None:  # released between our attempt and the read: try again
            continue
        if not holder:
            raise UserError(f"{path}: this {what} folder is locked by a process whose lock file cannot be read; if "
                            "none uses the folder, delete the lock file and start again")
        if holder.get("host") != me["host"]:
            raise UserError(f"{run_dir}: another {holder_kind} holds this folder ({_describe(holder)}); wait for it, "
                            f"{other}, or, if it is dead, delete {path}")
        if _alive(int(holder.get("pid", -1))) and holder.get("pid") != me["pid"]:
            doing = "is training in this folder" if what == "run" else "is writing into this data folder"
            raise UserError(f"{run_dir}: another {holder_kind} {doing} ({_describe(holder)}); wait for it or "
                            f"{other}")
        if _holder(path) == holder:  # still the same dead holder: take it over
            warnings.warn(f"{path}: taking over the lock left by {_describe(holder)}, which no longer runs",
                          stacklevel=2)
            path.unlink(missing_ok=True)
    raise UserError(f"{run_dir}: could not take the lock {path} (other processes keep starting here); {other}")


def _command() -> str:
    import sys
    argv0 = Path(sys.argv[0]) if sys.argv else Path()
    return " ".join(["brainrecon", *sys.argv[1:2]]) if "brainrecon" in (argv0.name, argv0.parent.name) else ""


def release(path: Path) -> None:
    """Remove the lock if it is still ours."""
    holder = _holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def hold(run_dir: Path, is_main: bool = True, name: str = LOCK, what: str = "run"):
    """Hold the lock of `run_dir` for the body of the `with` (only on rank 0). Temp files that a killed writer left
    there are removed once the lock is ours (no other writer can be using them)."""
    if not is_main:
        yield None
        return
    created = not Path(run_dir).exists()
    path = acquire(run_dir, name, what)
    try:
        remove_stale_temps(run_dir)
        yield path
    finally:
        release(path)
        if created and not any(Path(run_dir).iterdir()):  # a run that stopped before writing leaves no empty folder
            Path(run_dir).rmdir()


def in_use(folder: Path, name: str = LOCK) -> bool:
    """A process holds the folder's lock: a live one on this host, or any on another host (which cannot be checked
    from here)."""
    holder = _holder(Path(folder) / name)
    if holder is None:
        return False
    if not holder or holder.get("host") != socket.gethostname():
        return True
    return _alive(int(holder.get("pid", -1)))


def hold_data(data_dir: Path):
    """The lock of a data folder that fetch-data or convert-god writes into."""
    return hold(data_dir, True, DATA_LOCK, "data")
