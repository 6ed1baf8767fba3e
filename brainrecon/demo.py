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
                       "demo",
                       expected="about 35 min on 2 CPU cores without native bf16 (measured on an Intel Xeon, fp32)"),
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


@dataclass
class Stage:
    """One row of the demo's stage table: where it writes, what it runs with (its record), the file that says it
    finished, and the work itself."""
    label: str
    folder: Path
    what: dict
    done: str
    run: Callable[[], tuple[str, float | None]]
    """Does the work; returns the line to say and the seconds to report (None: the stage's wall time)."""
    timing: str = ""
    """The name its seconds are reported under (stage_seconds); '' for none."""
    fresh: bool = False
    """Start from an empty folder (a cut-short simulation is made again, not resumed)."""
    start: str = ""
    """Said when the stage starts ('' for nothing)."""


def run_demo(out: Path, modality: str = "rgbd", budget: str | DemoBudget = "default",
             say: Callable[[str], None] = print, threads: int = 0, quiet: bool = False,
             resume_hint: str = "the same demo command", seed: int | None = None, device: str | None = None) -> dict:
    """The whole method on the simulated subject; returns the evaluation records, comparisons and picture paths.
    `quiet` turns the trainers' progress off (tests); the stage lines are always said. `resume_hint` is how an
    interrupted trainer says to continue (a rerun of the demo resumes the stage that was cut short). `seed`: the
    training seed of both networks (train.seed; the simulated subject stays the same); `device`: where they train
    and decode (train.device)."""
    b = check_options(modality, budget)
    from brainrecon.config import load_config, to_dict
    from brainrecon.reconstruct import NPZ, reconstruct
    from brainrecon.simulation.simulate import simulate_subject
    from brainrecon.train.decoder import train_decoder
    from brainrecon.train.encoder import train_encoder

    out = Path(out)
    data = out / "data"
    sets = [*b.sets, *([f"train.threads={threads}"] if threads else []),
            *([f"train.seed={seed}"] if seed is not None else []), *([f"train.device={device}"] if device else [])]
    book, timings = Stages(say), {}
    start = time.perf_counter()
    say(f"brainrecon demo ({b.name}) on a SIMULATED subject: procedural RGBD scenes and simulated voxel responses, "
        "not real fMRI")
    if b.expected:
        say(f"  expect {b.expected}; writing to {out}")
    say(f"  training curves: tensorboard --logdir {out}")

    enc_dir, dec_dir, ridge_dir = (out / f"{s}_{modality}" for s in ("encoder", "decoder", "ridge"))
    enc_cfg = load_config("encoder", modality, b.preset, [*b.encoder_sets, *sets])
    dec_cfg = load_config("decoder", modality, b.preset, [*b.decoder_sets, *sets])
    ridge_cfg = load_config("decoder", modality, b.preset, [*b.decoder_sets, "model.kind=ridge", *sets])
    sim = {"simulation": asdict(b.simulation), "version": __version__}
    sim_key = _key(sim)
    enc = {"config": to_dict(enc_cfg), "data": sim_key, "preset": b.preset}
    dec = {"config": to_dict(dec_cfg), "data": sim_key, "encoder": _key(enc), "preset": b.preset}
    ridge = {"config": to_dict(ridge_cfg), "data": sim_key, "preset": b.preset}

    def simulate():
        m = simulate_subject(data, b.simulation)
        return f"{m['rois']['VC']} VC voxels, {b.simulation.n_unpaired} unpaired images", None

    def encoder():
        m = train_encoder(enc_cfg, data, enc_dir, resume=(enc_dir / "last.pt").exists(), quiet=quiet,
                          resume_hint=resume_hint)
        return f"median test r {m['median_r']:.3f}, r/ceiling {m['median_r_over_ceiling']:.2f}", m["seconds"]

    def decoder():
        m = train_decoder(dec_cfg, data, dec_dir, encoder_run=enc_dir, resume=(dec_dir / "last.pt").exists(),
                          quiet=quiet, resume_hint=resume_hint)
        return f"perceptual net {m['perceptual_net']}, {m['epochs']} epochs", m["seconds"]

    def ridge_baseline():
        m = train_decoder(ridge_cfg, data, ridge_dir, quiet=quiet, resume=True)   # the stage record matched
        return f"lambda {m['lambda']:g} chosen by {ridge_cfg.ridge_folds}-fold CV", m["seconds"]

    def decoded(run: Path):
        return lambda: (str(reconstruct(run, "test", data_dir=data, device=device or "auto")), None)

    table = [
        Stage("simulate", data, sim, "simulated.json", simulate, "simulate", fresh=True),
        Stage("train-encoder", enc_dir, enc, "metrics.json", encoder, "train-encoder",
              start=f"{enc_cfg.train.epochs} epochs ({enc_cfg.model.arch}) -> {enc_dir}"),
        Stage("train-decoder (self-supervised)", dec_dir, dec, "metrics.json", decoder, "train-decoder",
              start=f"{dec_cfg.train.epochs} epochs -> {dec_dir}"),
        Stage("ridge baseline", ridge_dir, ridge, "metrics.json", ridge_baseline, "ridge"),
        Stage("reconstruct", dec_dir / "reconstruct_test", {"run": _key(dec)}, NPZ, decoded(dec_dir), "reconstruct"),
        Stage("reconstruct", ridge_dir / "reconstruct_test", {"run": _key(ridge)}, NPZ, decoded(ridge_dir),
              "reconstruct"),
    ]
    steps = 6                                                       # the two reconstructions are step 5, evaluation 6
    for stage in table:
        step = min(table.index(stage) + 1, 5)
        if book.reusable(stage.folder, stage.what, stage.folder / stage.done):
            say(f"[{step}/{steps}] {stage.label}: already done in {stage.folder}")
            continue
        if stage.fresh and stage.folder.exists():
            shutil.rmtree(stage.folder)
        book.begin(stage.folder, stage.what)
        if stage.start:
            say(f"[{step}/{steps}] {stage.label}: {stage.start}")
        t = time.perf_counter()
        line, seconds = stage.run()
        seconds = time.perf_counter() - t if seconds is None else seconds
        if stage.timing:
            timings[stage.timing] = timings.get(stage.timing, 0.0) + seconds
        say(f"[{step}/{steps}] {stage.label}: {line} ({seconds:.0f}s)")

    t = time.perf_counter()
    result = _evaluate(out, [dec_dir / "reconstruct_test" / NPZ, ridge_dir / "reconstruct_test" / NPZ], data)
    timings["evaluate"] = time.perf_counter() - t
    say(f"[6/{steps}] evaluate: {result['csv']} ({time.perf_counter() - start:.0f}s in all)")
    return {**result, "gallery": dec_dir / "reconstruct_test" / "gallery.png", "seconds": time.perf_counter() - start,
            "stage_seconds": timings, "budget": b.name}


def _evaluate(out: Path, recon_paths: list[Path], data: Path) -> dict:
    """Always computed afresh from the reconstructions (seconds): identification, deep - ridge, the galleries."""
    from brainrecon.evaluation.identification import EvalOptions
    from brainrecon.evaluation.run_evaluation import evaluate_reconstructions
    from brainrecon.reconstruct import load_reconstructions
    from brainrecon.viz import comparison_grid
    opts = EvalOptions(ways=(2, 5, 10), metrics=("pixcorr", "ssim", "perceptual-effnet"), repeats=100,
                       mode="percent")
    result = evaluate_reconstructions(recon_paths, opts, data, out / "evaluation")   # deep - ridge, image by image
    deep, ridge = (load_reconstructions(p) for p in recon_paths)
    shown = {"deep": deep["reconstructions"], "ridge": ridge["reconstructions"]}
    if "ceiling_reconstructions" in deep:
        shown["deep D(E(x))"] = deep["ceiling_reconstructions"]
    comparison_grid(deep["ground_truth"], shown, out / "evaluation" / "gallery_vs_ridge.png")
    return {"records": result.records, "depth": result.depth, "comparisons": result.comparisons,
            "csv": result.paths["csv"], "plot": result.paths["png"],
            "gallery_vs_ridge": out / "evaluation" / "gallery_vs_ridge.png"}


DEMO_SUBJECT = BUDGETS["full"].simulation
"""The simulated subject of the converged (`--full`) demo, which the studies in benchmarks/ were run on."""
