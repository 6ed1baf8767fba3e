"""python -m benchmarks.gpu_cost: what each paper preset costs, for planning a GPU run.

For each paper preset (configs/{encoder,decoder}/{rgb,depth,rgbd}.yaml) on the GOD data (1,200 training pairs, 50,000
unpaired images), one training step at the preset's batch sizes is run and measured (benchmarks/paper_steps.py):
FLOPs of the step (torch's FlopCounterMode: matmuls and convolutions, forward and backward; elementwise work is not
counted), step time, and peak memory of the step (every tensor storage the step's networks, gradients, optimiser state,
activations and temporaries hold; measured on whatever device runs this, CUDA when present). The rest is arithmetic:
steps per epoch from the config and the data sizes, FLOPs per epoch (steps + validation) and per preset (every epoch,
the one-off filling of the decoder's frozen-output caches, the test predictions), the data and caches the trainer keeps
on the device at GOD's scale, the run folder's checkpoints, and each download's size as the fetch declarations know it.

The decoder step is measured with every frozen output computed in the step (train.cache_mb=0); at GOD's scale the
default 1,024 MB cache holds what fits (the unpaired images' encoder voxels first, then paired targets' features, then
unpaired images' features), and the FLOPs it saves are subtracted using the measured FLOPs per cached image.

Writes benchmarks/results/gpu_cost.csv (one row per preset and stage) and gpu_cost_downloads.csv; `--quick` measures at
tiny sizes (a smoke test: its numbers are not the presets').
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
from pathlib import Path

import torch

from benchmarks import paper_steps as ps
from brainrecon.config import load_config
from brainrecon.data.transforms import N_CHANNELS
from brainrecon.runtime import Runtime
from brainrecon.train.distributed import steps_per_epoch

RESULTS = Path(__file__).parent / "results"
PRESETS = ("rgb", "depth", "rgbd")
QUICK = {"encoder": ["data.resolution=32", "model.input_size=32", "model.width=0.125", "train.batch_size=8"],
         "decoder": ["data.resolution=32", "loss.perceptual_width=0.125", "train.batch_size=4",
                     "train.unpaired_image_batch=8", "model.channels=32"]}
"""--quick: tiny sizes, for a smoke test of the script (numbers not the presets')."""
MB = 2 ** 20


def machine(device: torch.device) -> str:
    """The machine in words: the GPU's name and memory, or the CPU's model, cores and memory."""
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name}, {p.total_memory / 2 ** 30:.0f} GiB"
    model = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name"))
        flags = next(ln for ln in text.splitlines() if ln.startswith("flags")).split()
        extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        model += f" ({', '.join(extras)})" if extras else ""
    except (OSError, StopIteration):
        pass
    try:
        mem = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                       if ln.startswith("MemTotal")).split()[1]) / 2 ** 20
        mem_s = f", {mem:.0f} GiB"
    except (OSError, StopIteration):
        mem_s = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores}-core {model}{mem_s}, no GPU"


def epoch_steps(cfg, n_pairs: int = ps.GOD["n_train"]) -> tuple[int, int]:
    """(steps per epoch, training pairs after the validation split) as the trainers compute them."""
    n_val = int(round(cfg.data.val_fraction * n_pairs))
    n = n_pairs - n_val
    return steps_per_epoch(n, cfg.train.batch_size, Runtime(torch.device("cpu")), cfg.data.val_fraction == 0), n


def cache_plan(budget_mb: float, n_pairs: int, per_image: dict, n_unpaired: int = ps.GOD["n_unpaired"]) -> dict:
    """What the decoder's frozen-output caches hold at GOD's scale (train/frozen_cache.py fill_in_order's order)."""
    left = int(budget_mb * MB)
    plan = {}
    for name, n_items, size in (("voxels", n_unpaired, per_image.get("voxel_bytes", 0)),
                                ("paired_features", n_pairs, per_image.get("feature_bytes", 0)),
                                ("unpaired_features", n_unpaired, per_image.get("feature_bytes", 0))):
        n = min(n_items, left // size) if size else 0
        left -= n * size
        plan[name] = (n, n_items)
    plan["bytes"] = int(budget_mb * MB) - left
    return plan


def state_bytes(step) -> tuple[int, int]:
    """(bytes of the trained network's state_dict, of its optimiser state): best.pt and last.pt hold these."""
    net = step.raw if hasattr(step, "raw") else step.step.raw
    model = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    opt = sum(v.numel() * v.element_size() for s in step.optimizer.state.values() for v in s.values()
              if isinstance(v, torch.Tensor))
    return model, opt


def stimulus_bytes(modality: str, n_voxels: int, resolution: int = 112) -> int:
    """The paired data a trainer keeps on the device: uint8 images (train, validation, test) and float32 fMRI."""
    g = ps.GOD
    images = (g["n_train"] + g["n_test"]) * N_CHANNELS[modality] * resolution ** 2
    fmri = (g["n_train"] + g["n_test"] + g["n_test"] * g["repeats"]) * n_voxels * 4
    return images + fmri


def measure_preset(stage: str, modality: str, data: Path, runs: Path, device: str, n_voxels: int, quick: bool,
                   reps: int) -> dict:
    extra = QUICK[stage] if quick else []
    step = ps.build(stage, modality, data, runs, device, extra, QUICK["encoder"] if quick else None)
    m = ps.measure(step, reps)
    cfg = step.cfg
    steps, n_pairs = epoch_steps(cfg)
    validation = step.validation_flops()
    per_image = step.per_image_flops()
    model_b, opt_b = state_bytes(step)
    resident = stimulus_bytes(modality, n_voxels, cfg.data.resolution)
    row = {"preset": modality, "stage": stage, "config": f"configs/{stage}/{modality}.yaml",
           "batch": " + ".join(f"{k} {v}" for k, v in step.batches.items() if v), "voxels": n_voxels,
           "steps_per_epoch": steps, "epochs": cfg.train.epochs, "step_ms": round(m["step_ms"], 1),
           "flops_step_measured": m["flops_step"]}
    one_off = int(per_image.get("eval_flops", 0) * ps.GOD["n_test"])
    flops_step = m["flops_step"]
    cache_mb = 0.0
    if stage == "decoder":
        budget = load_config("decoder", modality).train.cache_mb
        plan = cache_plan(budget, n_pairs, per_image)
        b = cfg.train
        hit = {k: plan[k][0] / plan[k][1] for k in ("voxels", "paired_features", "unpaired_features")}
        saved = (hit["voxels"] * b.unpaired_image_batch * per_image.get("encoder_flops", 0)
                 + hit["paired_features"] * b.batch_size * per_image.get("feature_flops", 0)
                 + hit["unpaired_features"] * b.unpaired_image_batch * per_image.get("feature_flops", 0))
        flops_step = int(m["flops_step"] - saved) if step.step.pool is not None else m["flops_step"]
        features = plan["paired_features"][0] + plan["unpaired_features"][0]
        one_off += int(plan["voxels"][0] * per_image.get("encoder_flops", 0)
                       + features * per_image.get("feature_flops", 0))
        if step.step.pool is not None:
            resident += ps.GOD["n_unpaired"] * N_CHANNELS[modality] * cfg.data.resolution ** 2
        resident += plan["bytes"]
        cache_mb = plan["bytes"] / MB
        row["cache_plan"] = "; ".join(f"{k} {plan[k][0]}/{plan[k][1]}"
                                      for k in ("voxels", "paired_features", "unpaired_features"))
    flops_epoch = steps * flops_step + validation
    row.update({"flops_step": flops_step, "flops_epoch": flops_epoch, "flops_one_off": one_off,
                "flops_preset": cfg.train.epochs * flops_epoch + one_off,
                "step_peak_mib": round(m["peak_bytes"] / MB, 1) if m["peak_bytes"] is not None else "",
                "resident_data_mib": round(resident / MB, 1), "cache_mib": round(cache_mb, 1),
                "planned_device_mib": round((m["peak_bytes"] + resident) / MB, 1) if m["peak_bytes"] else "",
                "cuda_max_allocated_mib": round(m["cuda_max_allocated"] / MB, 1) if "cuda_max_allocated" in m else "",
                "run_folder_mib": round((2 * model_b + opt_b) / MB, 1),
                "peak_method": m["peak_method"], "device": str(step.runtime.device),
                "autocast": step.runtime.amp_reason, "quick": quick})
    return row


def download_rows() -> list[dict]:
    """Every file the GOD path can download, with the size its declaration holds (None where the publisher gives
    none: fetch-data asks the server before downloading), plus torchvision's ImageNet VGGs (its published sizes)."""
    from brainrecon.sources import release_files
    rows = [{"file": e.name, "group": e.group, "bytes": e.size or "", "size_kind":
             ("estimate" if getattr(e, "approx", False) else "declared") if e.size else "not declared (asked of the "
             "server by fetch-data --dry-run)"} for e in release_files.entries()]
    from torchvision.models import VGG16_Weights, VGG19_Weights
    for name, w in (("torchvision VGG16", VGG16_Weights.IMAGENET1K_V1),
                    ("torchvision VGG19", VGG19_Weights.IMAGENET1K_V1)):
        size = w.meta.get("_file_size")
        rows.append({"file": name, "group": "torch hub cache", "bytes": int(size * 1e6) if size else "",
                     "size_kind": "torchvision's weights metadata (_file_size)" if size else "not declared"})
    return rows


def merge(path: Path, rows: list[dict]) -> list[dict]:
    """The rows already in `path` for other (preset, stage, quick), then the new rows: presets can be measured in
    separate, shorter runs."""
    if not path.exists():
        return rows
    new = {(r["preset"], r["stage"], str(r["quick"])) for r in rows}
    with open(path, newline="") as f:
        old = [r for r in csv.DictReader(f) if (r["preset"], r["stage"], r["quick"]) not in new]
    order = {(p, s): i for i, (p, s) in enumerate((p, s) for p in PRESETS for s in ("encoder", "decoder"))}
    return sorted(old + rows, key=lambda r: order.get((r["preset"], r["stage"]), 99))


ASSUMED_TFLOPS = (50, 200)
"""An ASSUMPTION, not a measurement: sustained TFLOP/s of an H100-class GPU on these steps (bf16 frozen networks, the
decoder in fp32/TF32, batches of 24-72 images at 112 px): about 5-20 % of its ~990 TFLOP/s dense bf16 peak. The
projected times divide the counted FLOPs by it; `python -m benchmarks.gpu_check` measures the real step times."""
NEEDS = {("rgb", "encoder"): ["sbj_3.npz", "images_112.npz", "torchvision VGG19"],
         ("rgb", "decoder"): ["imagenet_val.tar.gz", "torchvision VGG16"],
         ("depth", "encoder"): ["sbj_3.npz", "rgbd_112_from_224_large_png_uint8.npz",
                                "vgg19_depth_only_large_norm_within_img_best.pth.tar"],
         ("depth", "decoder"): ["imagenet_val.tar.gz", "val_depth_on_orig_small_png_uint8.tar.gz",
                                "vgg16_depth_only_large_norm_within_img_best.pth.tar"],
         ("rgbd", "encoder"): ["sbj_3.npz", "rgbd_112_from_224_large_png_uint8.npz",
                               "vgg19_rgbd_large_norm_within_img_best.pth.tar"],
         ("rgbd", "decoder"): ["imagenet_val.tar.gz", "val_depth_on_orig_small_png_uint8.tar.gz",
                               "vgg16_rgbd_large_norm_within_img_best.pth.tar"]}
"""What each preset's stage downloads beyond the previous stage (subject 3; the decoder also needs its encoder)."""


def _hm(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def report(results: Path = RESULTS) -> str:
    """The planning table of docs/performance.md, from gpu_cost.csv and gpu_cost_downloads.csv."""
    with open(results / "gpu_cost.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["quick"] == "False"]
    with open(results / "gpu_cost_downloads.csv", newline="") as f:
        sizes = {r["file"]: r["bytes"] for r in csv.DictReader(f)}
    lo, hi = ASSUMED_TFLOPS
    out = ["| preset | stage | batch | steps/epoch x epochs | step peak, measured | on the device at GOD scale | "
           "TFLOP / epoch | PFLOP / stage | time at 200-50 TFLOP/s (assumed) | downloads (size) | run folder |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flops = float(r["flops_preset"])
        need = ", ".join(f"{n} ({float(sizes[n]) / 1e6:.0f} MB)" if sizes.get(n) else f"{n} (?)"
                         for n in NEEDS[(r["preset"], r["stage"])])
        out.append(f"| {r['preset']} | {r['stage']} | {r['batch']} | {r['steps_per_epoch']} x {r['epochs']} | "
                   f"{float(r['step_peak_mib']) / 1024:.1f} GiB | {float(r['planned_device_mib']) / 1024:.1f} GiB | "
                   f"{float(r['flops_epoch']) / 1e12:.0f} | {flops / 1e15:.1f} | "
                   f"{_hm(flops / (hi * 1e12))} - {_hm(flops / (lo * 1e12))} | {need} | "
                   f"{float(r['run_folder_mib']):.0f} MiB |")
    machines = sorted({f"{r['machine']} ({r['device']})" for r in rows})
    out.append(f"\nMeasured on: {'; '.join(machines)}; {rows[0]['voxels']} voxels assumed.")
    return "\n".join(out)


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voxels", type=int, default=ps.VOXELS, help="voxels of the subject's ROI (an assumption)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--stages", default="encoder,decoder")
    ap.add_argument("--reps", type=int, default=2, help="timed steps per preset (after one warm-up step)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not the presets' numbers")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results; --quick: "
                    "a temporary folder)")
    ap.add_argument("--report", action="store_true", help="print the planning table from the CSVs; measure nothing")
    args = ap.parse_args(argv)
    if args.report:
        print(report(args.out or RESULTS))
        return
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu_cost_")) if args.quick else RESULTS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_cost_data_") as tmp:
        data = ps.write_data(Path(tmp) / "data", args.voxels, 32 if args.quick else 112,
                             n_train=120 if args.quick else ps.GOD["n_train"], n_unpaired=16 if args.quick else 96)
        for modality in args.presets.split(","):
            for stage in args.stages.split(","):
                row = measure_preset(stage, modality, data, Path(tmp) / "runs", args.device, args.voxels,
                                     args.quick, args.reps)
                row["machine"] = machine(torch.device(row["device"]))
                rows.append(row)
                print(f"{modality:5s} {stage:7s} {row['batch']:<40s} {row['steps_per_epoch']:3d} steps/epoch  "
                      f"{row['flops_step'] / 1e12:7.3f} TFLOP/step  {row['flops_epoch'] / 1e12:8.2f} TFLOP/epoch  "
                      f"{row['flops_preset'] / 1e15:7.3f} PFLOP/preset  step peak {row['step_peak_mib']} MiB  "
                      f"device total {row['planned_device_mib']} MiB  {row['step_ms']:.0f} ms/step "
                      f"({row['device']})", flush=True)
    write_csv(out / "gpu_cost.csv", merge(out / "gpu_cost.csv", rows))
    write_csv(out / "gpu_cost_downloads.csv", download_rows())
    print(f"wrote {out / 'gpu_cost.csv'} and {out / 'gpu_cost_downloads.csv'} (machine: {rows[0]['machine']})")


if __name__ == "__main__":
    main()
