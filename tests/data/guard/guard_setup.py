"""The tiny guard run's data and configs, shared by make_guard.py and tests/test_one_trainer.py."""

from __future__ import annotations

from brainrecon.config import load_config
from brainrecon.simulation.simulate import SimulationConfig

GUARD_SIM = SimulationConfig(seed=0, n_voxels=120, n_unpaired=24, resolution=32, n_train=96, n_test=10, n_repeats=4,
                             n_classes=4)
# one thread: a sum over threads rounds otherwise, and after a few Adam steps the weights show it
COMMON = {"data.resolution": 32, "train.device": "cpu", "train.amp": "false", "train.milestones": "[]",
          "train.threads": 1, "train.epochs": 2, "train.steps_per_epoch": 3,
          # 20 of the 96 pairs held out, the split guard.json was written with (data.val_min's floor gave 20 then;
          # its ramp gives 18 at 96 pairs now): a fraction of 0.21 draws the same 20 stimuli
          "data.val_fraction": 0.21}
ENCODER = {**COMMON, "train.batch_size": 16, "model.input_size": 32, "data.subject": 1}
DECODER = {**COMMON, "train.batch_size": 8, "train.warn_seconds": 0, "train.unpaired_image_batch": 4,
           "train.unpaired_fmri_batch": 4, "loss.perceptual_net": "none", "data.subject": 1}


def _sets(d: dict) -> list[str]:
    return [f"{k}={v}" for k, v in d.items()]


def enc_cfg(**extra):
    return load_config("encoder", "rgbd", "demo", _sets({**ENCODER, **extra}))


def dec_cfg(**extra):
    return load_config("decoder", "rgbd", "demo", _sets({**DECODER, **extra}))
