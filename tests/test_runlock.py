"""One run per --out folder: a second run stops at once; a lock left by a dead process is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from brainrecon import locks
from brainrecon.errors import UserError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


HOLDER = """
import sys
from brainrecon import locks
with locks.hold(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()              # hold the lock until the test closes stdin
"""


def test_second_start_is_refused_before_any_data_or_model(tmp_path):
    """A run folder held by another live process: `train-encoder` stops with one line naming the holder, before it
    reads data (its data folder here is empty, which would otherwise be the error) or builds a model. The holder is a
    small process that waits on its stdin, so nothing races the clock or competes for the CPU."""
    out, empty = tmp_path / "run", tmp_path / "no-data-here"
    empty.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run([sys.executable, "-m", "brainrecon", "train-encoder", "--config", "demo",
                                 "--data-dir", str(empty), "--out", str(out), "--set", "train.threads=1"],
                                capture_output=True, text=True, timeout=600)
        assert holder.poll() is None
        assert second.returncode == 2, second.stderr
        assert "another run is training in this folder" in second.stderr and f"pid {holder.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0 and not (out / locks.LOCK).exists()      # released when the holder ends


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": time.time() - 60}
    (tmp_path / locks.LOCK).write_text(json.dumps(stale))
    with pytest.warns(UserWarning, match="taking over the lock"):
        with locks.hold(tmp_path) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / locks.LOCK).exists()


def test_live_lock_and_foreign_host_are_refused(tmp_path):
    (tmp_path / locks.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(),
                                                     "started": time.time()}))
    with pytest.raises(UserError, match=f"pid {os.getppid()}"):
        locks.acquire(tmp_path)
    (tmp_path / locks.LOCK).write_text(json.dumps({"host": "node-17.cluster", "pid": 1, "started": time.time()}))
    with pytest.raises(UserError, match="node-17.cluster.*delete"):
        locks.acquire(tmp_path)


def test_only_rank_zero_takes_the_lock(tmp_path):
    with locks.hold(tmp_path, is_main=False) as path:
        assert path is None and not (tmp_path / locks.LOCK).exists()
