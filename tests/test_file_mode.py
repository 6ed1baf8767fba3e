"""Files are written with the mode the umask gives (0644 under umask 022), so a shared data folder stays readable."""

from __future__ import annotations

import os
import stat

import numpy as np

from brainrecon.atomic import write_all_atomic, write_atomic, write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        a = write_text_atomic(tmp_path / "config.yaml", "x: 1\n")
        b = write_atomic(tmp_path / "arrays.npz", lambda p: np.savez(open(p, "wb"), x=np.zeros(3)))
        c, d = write_all_atomic([(tmp_path / "c.txt", lambda p: p.write_text("c")),
                                 (tmp_path / "d.txt", lambda p: p.write_text("d"))])
        assert {_mode(p) for p in (a, b, c, d)} == {0o644}
        os.umask(0o077)
        assert _mode(write_text_atomic(tmp_path / "private.txt", "p")) == 0o600
        os.umask(0o002)
        assert _mode(write_text_atomic(tmp_path / "group.txt", "g")) == 0o664
    finally:
        os.umask(old)


def test_a_trained_run_is_readable_by_others(tiny_subject, tmp_path):
    from brainrecon.config import load_config
    from brainrecon.train.decoder import train_decoder
    from tests.conftest import tiny_overrides
    old = os.umask(0o022)
    try:
        run = tmp_path / "ridge"
        train_decoder(load_config("decoder", "rgb", "demo", tiny_overrides(**{"model.kind": "ridge"})), tiny_subject,
                      run, quiet=True)
    finally:
        os.umask(old)
    files = [p for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts]
    assert files and all(_mode(p) & 0o044 == 0o044 for p in files), [(p.name, oct(_mode(p))) for p in files]
