"""Live progress: a bar (epoch, step, elapsed, remaining, loss) on a terminal; one plain line per epoch elsewhere."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from tests.conftest import tiny_overrides

SETS = tiny_overrides(**{"train.epochs": 3, "train.milestones": "[]", "model.input_size": 32, "train.threads": 1})


def _command(tiny_subject, out):
    return [sys.executable, "-m", "brainrecon", "train-encoder", "--config", "demo", "--data-dir", str(tiny_subject),
            "--out", str(out), *[a for s in SETS for a in ("--set", s)]]


def test_a_terminal_shows_a_live_bar(tiny_subject, tmp_path):
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160"}
    proc = subprocess.Popen(_command(tiny_subject, tmp_path / "run"), stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            proc.kill()
            raise AssertionError("no output for 300 s")
        try:
            data = os.read(master, 65536)
        except OSError:          # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    os.close(master)
    assert proc.wait(timeout=60) == 0, "".join(chunks)
    text = "".join(chunks)
    assert "train-encoder epoch" in text and "remaining" in text           # the bar, redrawn while it runs
    assert "loss" in text                                                   # the running loss on the bar
    assert text.count("\r") + text.count("\x1b[") > 3                      # redrawn in place, several times


def test_stderr_to_a_file_gets_one_line_per_epoch(tiny_subject, tmp_path):
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        proc = subprocess.run(_command(tiny_subject, tmp_path / "run"), stdout=subprocess.DEVNULL, stderr=f,
                              timeout=600)
    assert proc.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    epochs = [s for s in lines if s.startswith("encoder epoch")]
    assert [s.split()[2] for s in epochs] == ["1/3", "2/3", "3/3"]
    assert all("val loss" in s and "test" not in s for s in epochs)        # validation only while training
    assert not any("\r" in s or "\x1b[" in s for s in lines)                # no bar, no control codes
    assert not any(s.strip() == "" for s in lines)
