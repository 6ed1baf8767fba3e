"""python -m benchmarks.pairs_curve {curve|cross|report} OUT [SEEDS]: reconstruction against the number of paired
(image, fMRI) samples, on a SIMULATED group (the default demo subject's settings, subjects 1-5, seed 0).

- curve:  the new subject (5) alone, at 1/16, 1/8, 1/4 and all of its 1,200 training stimuli (`--pairs`): the
          self-supervised decoder (with an encoder trained on the same pairs), the same decoder on the pairs only, and
          ridge; SEEDS training seeds per point (default 3; the seed also draws the pair subset).
- cross:  one model trained on subjects 1-4 (all their pairs, seed 0), adapted to subject 5 with 1/8, 1/16 and 1/4 of
          its pairs (`--init-from`), SEEDS seeds per point; compared with curve's from-scratch and ridge runs.
- report: score what is done (10-way identification: RGB pixcorr, ssim, perceptual-effnet; depth pixcorr), per arm and
          point the mean over seeds with the seed spread, and paired differences (seed-averaged per-image scores,
          paired bootstrap CI and sign-flip p over the 50 test images). -> OUT/pairs_curve.csv,
          OUT/pairs_curve_pairs.csv, OUT/pairs_curve.png (and the cross-subject ones when cross ran).

The optimisation budget is held fixed across points: every run trains the demo's epochs (`--config demo,fast`: 5
encoder, 4 decoder epochs, the decoder's learning rate decayed for its last) of a fixed number of steps
(`train.steps_per_epoch`: 18 encoder steps of 64 pairs, 50 decoder steps of 24 pairs: one pass over 1,200 pairs), so a
point with fewer pairs trains as long as one with all of them. No validation split (`data.val_fraction=0`): every run
keeps its last epoch, so no point selects on a split of a few images. Every stage already done in OUT is reused.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.pairs_report import report
from benchmarks.pairs_study import ADAPT_POINTS, DECODER_BUDGET, ENCODER_BUDGET, GROUP, NEW, POINTS, PRESET, label
from brainrecon.config import load_config
from brainrecon.demo import BUDGETS
from brainrecon.reconstruct import NPZ, reconstruct
from brainrecon.simulation.group import simulate_group
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder


def group(data: Path) -> Path:
    if not (data / "simulated.json").exists():
        simulate_group(data, replace(BUDGETS["default"].simulation), list(GROUP))
    return data


def train_stage(stage: str, data: Path, out: Path, sets: list[str], **kwargs) -> Path:
    """One stage of a study with the demo's fast configs (PRESET), skipped when its run is done, resumed when cut."""
    if not (out / "metrics.json").exists():
        cfg = load_config(stage, "rgbd", PRESET, sets)
        trainer = train_encoder if stage == "encoder" else train_decoder
        trainer(cfg, data, out, resume=(out / "last.pt").exists() or (out / "best.pt").exists(), quiet=True, **kwargs)
    return out


def recon(data: Path, run: Path) -> Path:
    path = run / "reconstruct_test" / NPZ
    return path if path.exists() else reconstruct(run, "test", data_dir=data)


def point_sets(point: float, seed: int, subject: int = NEW) -> list[str]:
    return [f"data.subject={subject}", f"data.pairs={point}", f"train.seed={seed}"]


def curve(out: Path, n_seeds: int = 3) -> None:
    """Seed-major (every point's seed 0 first), so a study cut short still pairs every arm at every point."""
    data = group(out / "data")
    for seed in range(n_seeds):
        for point in POINTS:
            run = out / f"curve_{label(point).replace('/', 'of')}_seed{seed}"
            sets = point_sets(point, seed)
            enc = train_stage("encoder", data, run / "encoder", [*sets, *ENCODER_BUDGET])
            recon(data, train_stage("decoder", data, run / "self_supervised", [*sets, *DECODER_BUDGET],
                                    encoder_run=enc))
            recon(data, train_stage("decoder", data, run / "pairs_only", [*sets, *DECODER_BUDGET,
                                                                     "train.self_supervision=false"]))
            recon(data, train_stage("decoder", data, run / "ridge", [*sets, "model.kind=ridge"]))


def cross(out: Path, n_seeds: int = 3) -> None:
    """One group model (subjects 1-4, all their pairs, seed 0), then subject 5 adapted from it at each point with
    `n_seeds` seeds (the seed draws the pairs and the fine-tuning's batches). The goal's point (1/8) first, every
    seed, then 1/16 and 1/4, so that a study cut short has the goal complete."""
    data = group(out / "data")
    others = ",".join(str(s) for s in GROUP if s != NEW)
    pre = out / "group_seed0"
    sets = [f"data.subjects=[{others}]", "train.seed=0"]
    enc = train_stage("encoder", data, pre / "encoder", [*sets, *ENCODER_BUDGET])
    dec = train_stage("decoder", data, pre / "self_supervised", [*sets, *DECODER_BUDGET], encoder_run=enc)
    for point in ADAPT_POINTS:
        for seed in range(n_seeds):
            run = out / f"adapted_{label(point).replace('/', 'of')}_seed{seed}"
            sets = point_sets(point, seed)
            a_enc = train_stage("encoder", data, run / "encoder", [*sets, *ENCODER_BUDGET, f"train.init_from={enc}"])
            recon(data, train_stage("decoder", data, run / "self_supervised",
                               [*sets, *DECODER_BUDGET, f"train.init_from={dec}"], encoder_run=a_enc))


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]
    seeds = int(rest[0]) if rest else 3
    if mode in ("curve", "cross"):
        {"curve": curve, "cross": cross}[mode](Path(out), seeds)
    elif mode == "report":
        report(Path(out))
    else:
        raise SystemExit(f"unknown mode {mode!r}; choose curve, cross or report")
