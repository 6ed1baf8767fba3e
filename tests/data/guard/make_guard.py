"""Writes guard.json: the weights of a tiny single-subject encoder and decoder run (both cycles on), trained by the
code of the day, for tests/test_one_trainer.py to compare a group-of-one run against. Run from the repository root:
`python tests/data/guard/make_guard.py` (it was run with the code before the trainers were merged into one per stage).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brainrecon.simulation.group import simulate_group  # noqa: E402
from brainrecon.train import checkpoint  # noqa: E402
from brainrecon.train.decoder import train_decoder  # noqa: E402
from brainrecon.train.encoder import train_encoder  # noqa: E402
from guard_setup import GUARD_SIM, dec_cfg, enc_cfg  # noqa: E402


def summary(state: dict) -> dict:
    return {k: {"sha256": hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16],
                "sum": float(v.double().sum()), "abs_sum": float(v.double().abs().sum()), "shape": list(v.shape)}
            for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, runs = Path(tmp) / "data", Path(tmp) / "runs"
        simulate_group(root, GUARD_SIM, [1, 2])
        train_encoder(enc_cfg(), root, runs / "enc", quiet=True)
        train_decoder(dec_cfg(), root, runs / "dec", encoder_run=runs / "enc", quiet=True)
        out = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "encoder": summary(checkpoint.load(runs / "enc" / checkpoint.LAST)["model"]),
               "decoder": summary(checkpoint.load(runs / "dec" / checkpoint.LAST)["model"])}
    Path(__file__).with_name("guard.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
