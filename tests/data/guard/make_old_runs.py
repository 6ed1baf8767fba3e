"""Writes tests/data/old_runs/: a single-subject and a two-subject decoder run (pairs only) as the code before the
one-trainer change wrote them (best.pt and config.yaml; last.pt, logs and the absolute data path left out), with the
test reconstructions it made, for tests/test_one_trainer.py to load and reconstruct with today's code. Run with that
code on the path: `PYTHONPATH=<old checkout> python tests/data/guard/make_old_runs.py` (from this repository's root).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from brainrecon.reconstruct import load_reconstructions, reconstruct  # noqa: E402
from brainrecon.simulation.group import simulate_group  # noqa: E402
from brainrecon.train.decoder import train_decoder  # noqa: E402
from guard_setup import GUARD_SIM, dec_cfg  # noqa: E402


def main() -> None:
    out = HERE.parent / "old_runs"
    out.mkdir(exist_ok=True)
    pairs_only = {"train.self_supervision": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        root, runs = Path(tmp) / "data", Path(tmp) / "runs"
        simulate_group(root, GUARD_SIM, [1, 2])
        for name, extra, subject in (("single", {}, None), ("group", {"data.subjects": "[1,2]"}, 2)):
            train_decoder(dec_cfg(**pairs_only, **extra), root, runs / name, quiet=True)
            rec = load_reconstructions(reconstruct(runs / name, "test", data_dir=root, subject=subject))
            state = torch.load(runs / name / "best.pt", weights_only=True)
            state["data_dir"] = ""
            (out / name).mkdir(exist_ok=True)
            torch.save(state, out / name / "best.pt")
            shutil.copy(runs / name / "config.yaml", out / name / "config.yaml")
            np.savez_compressed(out / name / "expected.npz", reconstructions=rec["reconstructions"])


if __name__ == "__main__":
    main()
