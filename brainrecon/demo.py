"""demo: simulate -> train-encoder -> train-decoder (self-supervised) -> ridge baseline -> reconstruct -> evaluate,
on a SIMULATED subject, through the same library functions as the subcommands. Finished stages are skipped when
re-run. The ridge decoder is trained beside the deep one (seconds), so every table shows the baseline."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from brainrecon.compare import compare_runs
from brainrecon.config import load_config
from brainrecon.simulation.simulate import SimulationConfig, simulate_subject
from brainrecon.evaluate import EvalOptions, evaluate_runs, write_outputs
from brainrecon.reconstruct import NPZ, load_reconstructions, reconstruct, with_ceilings
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder
from brainrecon.viz import comparison_grid

DEMO_SUBJECT = SimulationConfig(subject=3, seed=0, n_voxels=1500, n_unpaired=3000, resolution=64)
QUICK_SUBJECT = SimulationConfig(subject=3, seed=0, n_voxels=700, n_unpaired=1000, resolution=64)


def run_demo(out: Path, modality: str = "rgbd", quick: bool = False, say: Callable[[str], None] = print,
             threads: int = 0) -> dict:
    out = Path(out)
    data = out / "data"
    preset = "demo,quick" if quick else "demo"
    sets = [f"train.threads={threads}"] if threads else []
    sim = QUICK_SUBJECT if quick else DEMO_SUBJECT
    start = time.perf_counter()
    say("brainrecon demo on a SIMULATED subject: procedural RGBD scenes and simulated voxel responses, not real fMRI")
    steps = 6

    manifest = data / "simulated.json"
    if manifest.exists() and json.loads(manifest.read_text())["parameters"] == asdict(sim):
        say(f"[1/{steps}] simulate: already done in {data}")
    else:
        m = simulate_subject(data, sim)
        say(f"[1/{steps}] simulate: {m['rois']['VC']} VC voxels, {sim.n_unpaired} unpaired images "
            f"({m['seconds']:.0f}s)")

    enc_dir, dec_dir = out / f"encoder_{modality}", out / f"decoder_{modality}"
    if (enc_dir / "metrics.json").exists():
        say(f"[2/{steps}] train-encoder: already done in {enc_dir}")
    else:
        cfg = load_config("encoder", modality, preset, sets)
        m = train_encoder(cfg, data, enc_dir, resume=(enc_dir / "last.pt").exists(), quiet=True)
        say(f"[2/{steps}] train-encoder: median test r {m['median_r']:.3f}, r/ceiling {m['median_r_over_ceiling']:.2f} "
            f"({m['seconds']:.0f}s)")

    if (dec_dir / "metrics.json").exists():
        say(f"[3/{steps}] train-decoder: already done in {dec_dir}")
    else:
        cfg = load_config("decoder", modality, preset, sets)
        m = train_decoder(cfg, data, dec_dir, encoder_run=enc_dir, resume=(dec_dir / "last.pt").exists(),
                          quiet=True)
        say(f"[3/{steps}] train-decoder (self-supervised, perceptual net {m['perceptual_net']}): {m['epochs']} epochs "
            f"({m['seconds']:.0f}s)")

    ridge_dir = out / f"ridge_{modality}"
    if (ridge_dir / "metrics.json").exists():
        say(f"[4/{steps}] ridge baseline: already done in {ridge_dir}")
    else:
        cfg = load_config("decoder", modality, preset, ["model.kind=ridge", *sets])
        m = train_decoder(cfg, data, ridge_dir, quiet=True)
        say(f"[4/{steps}] ridge baseline: lambda {m['lambda']:g} chosen by {cfg.ridge_folds}-fold CV "
            f"({m['seconds']:.0f}s)")

    recon_paths = []
    for run in (dec_dir, ridge_dir):
        path = run / "reconstruct_test" / NPZ
        if path.exists():
            say(f"[5/{steps}] reconstruct: already done in {path.parent}")
        else:
            path = reconstruct(run, "test", data_dir=data)
            say(f"[5/{steps}] reconstruct: {path}")
        recon_paths.append(path)

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
    say(f"[6/{steps}] evaluate: {paths['csv']} ({time.perf_counter() - start:.0f}s in all)")
    return {"records": records, "depth": depth, "comparisons": comparisons,
            "gallery": recon_paths[0].parent / "gallery.png", "plot": paths["png"],
            "gallery_vs_ridge": out / "evaluation" / "gallery_vs_ridge.png",
            "seconds": time.perf_counter() - start}
