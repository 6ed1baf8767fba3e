"""One run per --out folder: a second run stops at once; a lock left by a dead process is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from brainrecon.errors import UserError
from brainrecon.train import runlock
from tests.conftest import tiny_overrides


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_two_processes_on_one_out_folder(tiny_subject, tmp_path):
    """The second run is refused while the first trains; the first then stops on Ctrl-C, releasing the lock."""
    import signal
    out = tmp_path / "run"
    # one thread each: a 2-thread trainer's OpenMP threads spin on both cores and starved the second start past 120 s
    sets = [a for s in tiny_overrides(**{"train.epochs": 10000, "model.input_size": 32, "train.threads": 1})
            for a in ("--set", s)]
    cmd = [sys.executable, "-m", "brainrecon", "train-encoder", "--config", "demo", "--data-dir", str(tiny_subject),
           "--out", str(out), *sets]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists():           # the first run holds the lock and has trained an epoch
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline, "the first run never started training"
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run must still be training when the second is refused"
    assert second.returncode == 2, second.stderr
    assert "another run is training in this folder" in second.stderr and f"pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    epochs = [json.loads(s)["epoch"] for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(len(epochs))) and epochs              # one run's epochs, nothing interleaved
    assert not (out / runlock.LOCK).exists()                           # released on Ctrl-C too


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": time.time() - 60}
    (tmp_path / runlock.LOCK).write_text(json.dumps(stale))
    with pytest.warns(UserWarning, match="taking over the lock"):
        with runlock.hold(tmp_path) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / runlock.LOCK).exists()


def test_live_lock_and_foreign_host_are_refused(tmp_path):
    (tmp_path / runlock.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(),
                                                     "started": time.time()}))
    with pytest.raises(UserError, match=f"pid {os.getppid()}"):
        runlock.acquire(tmp_path)
    (tmp_path / runlock.LOCK).write_text(json.dumps({"host": "node-17.cluster", "pid": 1, "started": time.time()}))
    with pytest.raises(UserError, match="node-17.cluster.*delete"):
        runlock.acquire(tmp_path)


def test_only_rank_zero_takes_the_lock(tmp_path):
    with runlock.hold(tmp_path, is_main=False) as path:
        assert path is None and not (tmp_path / runlock.LOCK).exists()
