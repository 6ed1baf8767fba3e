"""demo: simulate -> train-encoder -> train-decoder (self-supervised) -> ridge baseline -> reconstruct -> evaluate,
on a SIMULATED subject, through the same library functions as the subcommands.

Two budgets: `default` (minutes on a laptop CPU, chosen by `python -m benchmarks.demo_budget`) and `full` (trained to
convergence, half an hour and more on 2 CPU cores). Every stage folder records what it ran with (`demo_stage.json`: the
simulation parameters or the resolved config, and the keys of the stages it read); a rerun into the same --out skips a
stage only when that record matches, resumes a matching stage that was cut short, and otherwise computes it again
(saying so), and with it every stage that depends on it. The ridge decoder is trained beside the deep one (seconds), so
every table shows the baseline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from brainrecon import __version__
from brainrecon.atomic import write_text_atomic
from brainrecon.config import MODALITIES
from brainrecon.errors import UserError
from brainrecon.simulation.simulate import SimulationConfig

STAGE_RECORD = "demo_stage.json"


@dataclass(frozen=True)
class DemoBudget:
    """What one demo run simulates and trains: the simulated subject, the encoder/decoder preset and any overrides."""
    name: str
    simulation: SimulationConfig
    preset: str
    encoder_sets: tuple[str, ...] = ()
    decoder_sets: tuple[str, ...] = ()
    expected: str = ""
    """What to expect, in words, shown at the start (measured durations, with the machine)."""
    sets: tuple[str, ...] = ()
    """Overrides for both stages (train.threads, train.amp, ...)."""


# The default budget was chosen with `python -m benchmarks.demo_budget` (benchmarks/results/demo_budget*.csv,
# docs/performance.md); its training settings are configs/*/fast.yaml.
BUDGETS = {
    "default": DemoBudget("default", SimulationConfig(subject=3, seed=0, n_voxels=1500, n_unpaired=1000,
                                                      resolution=64), "demo,fast",
                          expected="about 4 min on 2 CPU cores (measured: 4.0-4.3 min without AVX-512 in fp32, "
                                   "3.9 min with native bf16)"),
    "full": DemoBudget("full", SimulationConfig(subject=3, seed=0, n_voxels=1500, n_unpaired=3000, resolution=64),
                       "demo", expected="about 35 min on 2 CPU cores without native bf16 (measured on an Intel Xeon, fp32)"),
}


def check_options(modality: str, budget: str | DemoBudget) -> DemoBudget:
    """Refuse bad options before any work (one line each); the budget, by name or as given."""
    if modality not in MODALITIES:
        raise UserError(f"--modality {modality!r} is not a modality; choose one of {', '.join(MODALITIES)}")
    if isinstance(budget, DemoBudget):
        return budget
    if budget not in BUDGETS:
        raise UserError(f"demo budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    return BUDGETS[budget]


def _key(what: dict) -> str:
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    """The stage records of one --out folder: `reusable(folder, what, done)` says whether a stage's output can be
    reused, `begin(folder, what)` records what a stage is about to run with."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say

    def reusable(self, folder: Path, what: dict, done: Path) -> bool:
        """True when `folder` holds this stage finished with the same inputs. A folder made with other inputs is
        removed (announced); one that a demo did not make stops the run (it is not the demo's to delete)."""
        record = folder / STAGE_RECORD
        if not folder.exists():
            return False
        if not record.exists():
            if any(folder.iterdir()):
                raise UserError(f"{folder}: this folder was not written by brainrecon demo (no {STAGE_RECORD}); "
                                f"choose another --out or move it away")
            return False
        old = json.loads(record.read_text())
        if old.get("key") == _key(what):
            return done.exists()
        changed = sorted(k for k in set(old.get("what", {})) | set(what) if old.get("what", {}).get(k) != what.get(k))
        self.say(f"  {folder.name}: made with other settings ({', '.join(changed) or 'another version'} differ); "
                 "computing it again")
        shutil.rmtree(folder)
        return False

    def begin(self, folder: Path, what: dict) -> str:
        """Record what the stage runs with before it starts (so a cut-short stage resumes only with the same)."""
        folder.mkdir(parents=True, exist_ok=True)
        key = _key(what)
        write_text_atomic(folder / STAGE_RECORD, json.dumps({"key": key, "what": what}, indent=2, default=str))
        return key

    @staticmethod
    def key_of(folder: Path) -> str:
        return json.loads((folder / STAGE_RECORD).read_text())["key"]


def run_demo(out: Path, modality: str = "rgbd", budget: str | DemoBudget = "default",
             say: Callable[[str], None] = print, threads: int = 0, quiet: bool = False) -> dict:
    """The whole method on the simulated subject; returns the evaluation records, comparisons and picture paths.
    `quiet` turns the trainers' progress off (tests); the stage lines are always said."""
    b = check_options(modality, budget)
    from brainrecon.config import load_config, to_dict
    from brainrecon.simulation.simulate import simulate_subject
    from brainrecon.train.decoder import train_decoder
    from brainrecon.train.encoder import train_encoder

    out = Path(out)
    data = out / "data"
    sets = [*b.sets, *([f"train.threads={threads}"] if threads else [])]
    stages, timings = Stages(say), {}
    start = time.perf_counter()
    say(f"brainrecon demo ({b.name}) on a SIMULATED subject: procedural RGBD scenes and simulated voxel responses, "
        "not real fMRI")
    if b.expected:
        say(f"  expect {b.expected}; writing to {out}")
    say(f"  training curves: tensorboard --logdir {out}")
    steps = 6

    sim_what = {"simulation": asdict(b.simulation), "version": __version__}
    if stages.reusable(data, sim_what, data / "simulated.json"):
        say(f"[1/{steps}] simulate: already done in {data}")
    else:
        if data.exists():
            shutil.rmtree(data)
        stages.begin(data, sim_what)
        t = time.perf_counter()
        m = simulate_subject(data, b.simulation)
        timings["simulate"] = time.perf_counter() - t
        say(f"[1/{steps}] simulate: {m['rois']['VC']} VC voxels, {b.simulation.n_unpaired} unpaired images "
            f"({timings['simulate']:.0f}s)")
    sim_key = stages.key_of(data)

    enc_dir, dec_dir, ridge_dir = (out / f"{s}_{modality}" for s in ("encoder", "decoder", "ridge"))
    enc_cfg = load_config("encoder", modality, b.preset, [*b.encoder_sets, *sets])
    enc_what = {"config": to_dict(enc_cfg), "data": sim_key, "preset": b.preset}
    if stages.reusable(enc_dir, enc_what, enc_dir / "metrics.json"):
        say(f"[2/{steps}] train-encoder: already done in {enc_dir}")
    else:
        stages.begin(enc_dir, enc_what)
        say(f"[2/{steps}] train-encoder: {enc_cfg.train.epochs} epochs ({enc_cfg.model.arch}) -> {enc_dir}")
        m = train_encoder(enc_cfg, data, enc_dir, resume=(enc_dir / "last.pt").exists(), quiet=quiet)
        timings["train-encoder"] = m["seconds"]
        say(f"[2/{steps}] train-encoder: median test r {m['median_r']:.3f}, r/ceiling {m['median_r_over_ceiling']:.2f} "
            f"({m['seconds']:.0f}s)")
    enc_key = stages.key_of(enc_dir)

    dec_cfg = load_config("decoder", modality, b.preset, [*b.decoder_sets, *sets])
    dec_what = {"config": to_dict(dec_cfg), "data": sim_key, "encoder": enc_key, "preset": b.preset}
    if stages.reusable(dec_dir, dec_what, dec_dir / "metrics.json"):
        say(f"[3/{steps}] train-decoder: already done in {dec_dir}")
    else:
        stages.begin(dec_dir, dec_what)
        say(f"[3/{steps}] train-decoder (self-supervised): {dec_cfg.train.epochs} epochs -> {dec_dir}")
        m = train_decoder(dec_cfg, data, dec_dir, encoder_run=enc_dir, resume=(dec_dir / "last.pt").exists(),
                          quiet=quiet)
        timings["train-decoder"] = m["seconds"]
        say(f"[3/{steps}] train-decoder (self-supervised, perceptual net {m['perceptual_net']}): {m['epochs']} epochs "
            f"({m['seconds']:.0f}s)")
    dec_key = stages.key_of(dec_dir)

    ridge_cfg = load_config("decoder", modality, b.preset, [*b.decoder_sets, "model.kind=ridge", *sets])
    ridge_what = {"config": to_dict(ridge_cfg), "data": sim_key, "preset": b.preset}
    if stages.reusable(ridge_dir, ridge_what, ridge_dir / "metrics.json"):
        say(f"[4/{steps}] ridge baseline: already done in {ridge_dir}")
    else:
        stages.begin(ridge_dir, ridge_what)
        m = train_decoder(ridge_cfg, data, ridge_dir, quiet=quiet)
        timings["ridge"] = m["seconds"]
        say(f"[4/{steps}] ridge baseline: lambda {m['lambda']:g} chosen by {ridge_cfg.ridge_folds}-fold CV "
            f"({m['seconds']:.0f}s)")
    ridge_key = stages.key_of(ridge_dir)

    t = time.perf_counter()
    recon_paths = [_reconstruct(stages, run, key, data, say, steps) for run, key in ((dec_dir, dec_key),
                                                                                     (ridge_dir, ridge_key))]
    timings["reconstruct"] = time.perf_counter() - t
    t = time.perf_counter()
    result = _evaluate(out, recon_paths, data)
    timings["evaluate"] = time.perf_counter() - t
    say(f"[6/{steps}] evaluate: {result['csv']} ({time.perf_counter() - start:.0f}s in all)")
    return {**result, "gallery": recon_paths[0].parent / "gallery.png", "seconds": time.perf_counter() - start,
            "stage_seconds": timings, "budget": b.name}


def _reconstruct(stages: Stages, run: Path, run_key: str, data: Path, say, steps: int) -> Path:
    from brainrecon.reconstruct import NPZ, reconstruct
    folder = run / "reconstruct_test"
    what = {"run": run_key}
    if stages.reusable(folder, what, folder / NPZ):
        say(f"[5/{steps}] reconstruct: already done in {folder}")
        return folder / NPZ
    stages.begin(folder, what)
    path = reconstruct(run, "test", data_dir=data)
    say(f"[5/{steps}] reconstruct: {path}")
    return path


def _evaluate(out: Path, recon_paths: list[Path], data: Path) -> dict:
    """Always computed afresh from the reconstructions (seconds): identification, deep - ridge, the galleries."""
    from brainrecon.evaluation.compare import compare_runs
    from brainrecon.evaluation.identification import EvalOptions, evaluate_runs, write_outputs
    from brainrecon.reconstruct import load_reconstructions, with_ceilings
    from brainrecon.viz import comparison_grid
    opts = EvalOptions(ways=(2, 5, 10), metrics=("pixcorr", "ssim", "perceptual-effnet"), repeats=100,
                       mode="percent")
    records, depth = evaluate_runs(with_ceilings([load_reconstructions(p) for p in recon_paths]), opts, data)
    comparisons = compare_runs(records)                                       # the deep decoder - ridge, image by image
    paths = write_outputs(records, depth, out / "evaluation", comparisons)
    deep, ridge = (load_reconstructions(p) for p in recon_paths)
    shown = {"deep": deep["reconstructions"], "ridge": ridge["reconstructions"]}
    if "ceiling_reconstructions" in deep:
        shown["deep D(E(x))"] = deep["ceiling_reconstructions"]
    comparison_grid(deep["ground_truth"], shown, out / "evaluation" / "gallery_vs_ridge.png")
    return {"records": records, "depth": depth, "comparisons": comparisons, "csv": paths["csv"],
            "plot": paths["png"], "gallery_vs_ridge": out / "evaluation" / "gallery_vs_ridge.png"}


DEMO_SUBJECT = BUDGETS["full"].simulation
"""The simulated subject of the converged (`--full`) demo, which the studies in benchmarks/ were run on."""
