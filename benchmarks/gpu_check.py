"""python -m benchmarks.gpu_check: the GPU check, in one command and under 10 minutes.

On a CUDA machine it prints the device (name, memory, CUDA / cuDNN / torch versions, bf16) and runs, each part under
its own time limit:
  demo   `brainrecon demo` with its default budget, into a temporary folder;
  train  one epoch of each paper preset (train-encoder, then train-decoder on that encoder; configs/{encoder,decoder}/
         {rgb,depth,rgbd}.yaml unchanged) on the GOD rehearsal world (brainrecon/simulation/rehearsal.py: the release's
         files with random networks, here with GOD's 1,200 training pairs, 35 test repeats, 4,500 voxels, 980
         unpaired images), through the installed `brainrecon` command;
  steps  the step-time / peak-memory / FLOPs table of benchmarks.gpu_cost at the paper's batch sizes.
It writes benchmarks/results/gpu_check_<device>.csv (one row per part and preset) and gpu_check_<device>.txt (the
summary it prints).

On a machine without CUDA it runs as a smoke test of itself: the rehearsal world at its small default size, tiny
networks (`--set` overrides), the demo skipped unless `--parts` names it, results in the --out folder. Its numbers say
nothing about the presets.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import gpu_cost
from benchmarks import paper_steps as ps

LIMITS = {"demo": 180, "train": 170, "steps": 110}
"""Seconds each part may take (in all under 10 minutes); a part past its limit is stopped and reported as such."""
PRESETS = ("rgb", "depth", "rgbd")
SMOKE_SETS = {"encoder": ["model.backbone_weights=none", "model.width=0.125", "model.input_size=32",
                          "train.batch_size=8"],
              "decoder": ["loss.perceptual_net=vgg16-random", "loss.perceptual_width=0.125", "model.channels=32",
                          "train.batch_size=8", "train.unpaired_image_batch=8"]}
"""Smoke mode: tiny networks on the small rehearsal world (the check's plumbing, not the presets' cost)."""


def device_report() -> dict:
    """What the numbers were measured on."""
    info = {"torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update({"device": "cuda", "name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 1),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                     "capability": f"{p.major}.{p.minor}", "bf16": torch.cuda.is_bf16_supported(),
                     "gpus": torch.cuda.device_count()})
    else:
        from brainrecon.runtime import cpu_bf16
        native, why = cpu_bf16()
        info.update({"device": "cpu", "name": gpu_cost.machine(torch.device("cpu")), "bf16": native,
                     "bf16_reason": why})
    return info


def slug(info: dict) -> str:
    return "cpu-smoke" if info["device"] == "cpu" else re.sub(r"[^A-Za-z0-9]+", "-", info["name"]).strip("-")


def run(cmd: list[str], limit: float, env: dict, log: Path) -> tuple[str, float]:
    """Run a command with a time limit; (status, seconds). Its output goes to `log`."""
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=max(1.0, limit)).returncode
            status = "ok" if rc == 0 else f"exit {rc} (see {log})"
        except subprocess.TimeoutExpired:
            status = f"stopped at the {limit:.0f} s limit"
    return status, time.perf_counter() - start


def brainrecon() -> list[str]:
    exe = shutil.which("brainrecon")
    return [exe] if exe else [sys.executable, "-m", "brainrecon"]


def make_data(out: Path, smoke: bool) -> tuple[Path, Path | None]:
    """The rehearsal world laid out as a data folder (as fetch-data would leave it) and its torch home."""
    from brainrecon.data.archive import extract
    from brainrecon.simulation.rehearsal import RehearsalConfig, make_world
    from brainrecon.sources import release_files
    cfg = RehearsalConfig(subjects=(ps.SUBJECT,)) if smoke else \
        RehearsalConfig(subjects=(ps.SUBJECT,), n_train=ps.GOD["n_train"], n_voxels=ps.VOXELS,
                        repeats=ps.GOD["repeats"], unpaired_per_class=20)
    world = make_world(out / "world", cfg, torch_home=out / "torch_home")
    data = out / "data"
    for e in release_files.entries():
        src = world.release / e.name
        if e.group == "midas" or (e.subject is not None and e.subject != ps.SUBJECT) or not src.exists():
            continue
        if e.unpack_to:
            extract(src, data / e.unpack_to)
        else:
            (data / e.key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, data / e.key)
    return data, world.torch_home


def train_part(out: Path, data: Path, env: dict, presets: list[str], smoke: bool, limit: float) -> list[dict]:
    """One epoch of each preset's encoder and decoder through the brainrecon command."""
    rows, deadline = [], time.perf_counter() + limit
    for modality in presets:
        enc, dec = out / "runs" / f"encoder_{modality}", out / "runs" / f"decoder_{modality}"
        common = ["--modality", modality, "--subject", str(ps.SUBJECT), "--data-dir", str(data), "--epochs", "1"]
        for stage, cmd in (("encoder", ["train-encoder", *common, "--out", str(enc)]),
                           ("decoder", ["train-decoder", *common, "--encoder", str(enc), "--out", str(dec)])):
            if smoke:
                cmd += [a for s in SMOKE_SETS[stage] for a in ("--set", s)]
            left = deadline - time.perf_counter()
            if left <= 0:
                rows.append({"part": "train", "preset": modality, "stage": stage, "status": "not run (part limit)"})
                continue
            status, wall = run(brainrecon() + cmd, left, env, out / f"train_{stage}_{modality}.log")
            row = {"part": "train", "preset": modality, "stage": stage, "status": status, "wall_s": round(wall, 1)}
            metrics = (enc if stage == "encoder" else dec) / "metrics.json"
            if status == "ok" and metrics.exists():
                m = json.loads(metrics.read_text())
                row.update({"train_s": m.get("seconds"), "autocast": m.get("autocast_reason", ""),
                            "device": m.get("device", "")})
                if stage == "decoder":
                    row["cache"] = json.dumps(m.get("frozen_cache", {}))
            rows.append(row)
    return rows


def steps_part(out: Path, presets: list[str], smoke: bool, limit: float) -> list[dict]:
    """benchmarks.gpu_cost's measurement of each preset's step on this device (paper sizes; tiny in smoke mode)."""
    rows, deadline = [], time.perf_counter() + limit
    voxels = 300 if smoke else ps.VOXELS
    data = ps.write_data(out / "paper_data", voxels, 32 if smoke else 112, n_train=120 if smoke else 1200,
                         n_unpaired=16 if smoke else 96)
    for modality in presets:
        for stage in ("encoder", "decoder"):
            if time.perf_counter() > deadline:
                rows.append({"part": "steps", "preset": modality, "stage": stage, "status": "not run (part limit)"})
                continue
            if torch.cuda.is_available():  # the previous preset's networks and data are gone: give their memory back
                gc.collect()
                torch.cuda.empty_cache()
            start = time.perf_counter()
            try:
                r = gpu_cost.measure_preset(stage, modality, data, out / "step_runs", "auto", voxels, smoke,
                                            1 if smoke else 3)
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: say so, measure the next preset
                rows.append({"part": "steps", "preset": modality, "stage": stage,
                             "status": f"error: {type(e).__name__}: {str(e)[:300]}"})
                continue
            wall = time.perf_counter() - start
            r = {"part": "steps", **{k: r[k] for k in ("preset", "stage")}, "status": "ok", "wall_s": round(wall, 1),
                 **{k: v for k, v in r.items() if k not in ("preset", "stage")}}
            r["tflops_per_s"] = round(r["flops_step_measured"] / (r["step_ms"] / 1000) / 1e12, 2)
            rows.append(r)
    return rows


def summary(info: dict, rows: list[dict], total: float) -> str:
    lines = ["device: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    for r in rows:
        what = f"{r['part']:<6s} {r.get('preset', ''):<5s} {r.get('stage', ''):<7s} {r['status']}"
        if r["part"] == "steps" and r["status"] == "ok":
            what += (f"  {r['step_ms']:.0f} ms/step  {r['tflops_per_s']} TFLOP/s  step peak {r['step_peak_mib']} MiB"
                     f"  cuda max allocated {r.get('cuda_max_allocated_mib') or '-'} MiB  "
                     f"{r['flops_epoch'] / 1e12:.1f} TFLOP/epoch")
        elif "wall_s" in r:
            what += f"  {r['wall_s']} s wall" + (f", {r['train_s']} s training" if r.get("train_s") else "")
        lines.append(what)
    lines.append(f"total {total:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=None, help="comma list of demo, train, steps (default: all on CUDA, train and "
                    "steps on a CPU)")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--results", type=Path, default=None, help="where the CSV and summary go (default "
                    "benchmarks/results on CUDA, the working folder in smoke mode)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes even on CUDA (always on without CUDA)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    smoke = args.smoke or not cuda
    parts = (args.parts or ("demo,train,steps" if cuda else "train,steps")).split(",")
    presets = args.presets.split(",")
    info = device_report()
    print("device: " + ", ".join(f"{k} {v}" for k, v in info.items()) + (" (smoke mode: tiny sizes)" if smoke else ""),
          flush=True)
    start = time.perf_counter()
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="gpu_check_")
    out = Path(args.out or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    results = args.results or (out if smoke else gpu_cost.RESULTS)
    rows: list[dict] = []
    try:
        env = dict(os.environ)
        if "demo" in parts:
            status, wall = run(brainrecon() + ["demo", "--out", str(out / "demo")], LIMITS["demo"], env,
                               out / "demo.log")
            rows.append({"part": "demo", "status": status, "wall_s": round(wall, 1)})
            print(summary(info, rows[-1:], 0).splitlines()[1], flush=True)
        if "train" in parts:
            t0 = time.perf_counter()
            try:
                data, torch_home = make_data(out, smoke)
            except Exception as e:  # noqa: BLE001 - one part failing must not cost the others
                rows.append({"part": "world", "status": f"error: {type(e).__name__}: {e}"})
            else:
                rows.append({"part": "world", "status": "ok", "wall_s": round(time.perf_counter() - t0, 1)})
                env["TORCH_HOME"] = str(torch_home)  # the rehearsal's random torchvision VGGs, never the user's cache
                rows += train_part(out, data, env, presets, smoke, LIMITS["train"])
            print("\n".join(summary(info, [r for r in rows if r["part"] in ("world", "train")], 0).splitlines()[1:-1]),
                  flush=True)
        if "steps" in parts:
            try:
                rows += steps_part(out, presets, smoke, LIMITS["steps"])
            except Exception as e:  # noqa: BLE001
                rows.append({"part": "steps", "status": f"error: {type(e).__name__}: {e}"})
    finally:
        total = time.perf_counter() - start
        text = summary(info, rows, total)
        print(text)
        results.mkdir(parents=True, exist_ok=True)
        name = f"gpu_check_{slug(info)}"
        gpu_cost.write_csv(results / f"{name}.csv", [{**r, "machine": info["name"]} for r in rows])
        (results / f"{name}.txt").write_text(text + "\n")
        print(f"wrote {results / name}.csv and .txt")
        if tmp is not None:
            tmp.cleanup()
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
