"""python -m benchmarks.demo_budget run OUT [--candidates A,B] [--seeds 0,1,2] [--as-avx2] | report OUT

Chooses the default demo's budget by measurement: each candidate budget (a simulated subject plus config overrides on
top of the converged `demo` preset; only config choices, never what a training step computes) runs the whole demo
(`brainrecon.demo.run_demo`) from an empty folder, one job at a time, and records the wall time of every stage and
the 10-way identification of the deep decoder and of ridge, with the paired deep - ridge difference (95 % bootstrap CI
over the 50 test images, sign-flip p). `--seeds` trains each candidate with several seeds (train.seed of both
stages; the simulated subject stays the same): the spread across training runs, which a CI over images does not
measure.

`--as-avx2` measures as on a CPU without AVX-512 on one that has it: torch's kernels dispatched at AVX2
(ATEN_CPU_CAPABILITY=avx2, set before torch loads) and fp32 (train.amp false: a CPU without AVX-512 has no native
bf16). Each row names the CPU, the kernel level torch used and whether autocast was on.

-> OUT/demo_budget.csv (one row per candidate, seed, channel, metric), OUT/demo_budget_stages.csv (seconds per stage)
   and OUT/demo_budget.png (wall time per stage; deep - ridge per metric with its CI).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

COLUMNS = ("candidate", "seed", "channel", "metric", "ways", "deep", "deep_ci_low", "deep_ci_high", "ridge",
           "ridge_ci_low", "ridge_ci_high", "diff", "diff_ci_low", "diff_ci_high", "p_value", "wall_seconds",
           "cpu", "torch_cpu_capability", "autocast")
STAGES = ("simulate", "train-encoder", "train-decoder", "ridge", "reconstruct", "evaluate")
SHOWN = (("rgb", "pixcorr"), ("rgb", "ssim"), ("rgb", "perceptual-effnet"), ("depth", "pixcorr"), ("depth", "ssim"))

# name -> (simulation overrides, encoder overrides, decoder overrides), all on top of the converged `demo` preset and
# the full demo's subject. The default budget's preset (configs/*/fast.yaml) is the chosen row (e5-d4-m3), written
# out; `--candidates default` (or full) runs the shipped budget itself.
SMALL_UNPAIRED = ("train.milestones=[]", "train.unpaired_image_batch=24", "train.unpaired_fmri_batch=8")
CANDIDATES = {
    "e12-d2": ({"n_unpaired": 1000},
               ["train.epochs=12", "train.lr=0.003", "model.head_channels=8"],
               ["train.epochs=2", *SMALL_UNPAIRED]),
    "e6-d4": ({"n_unpaired": 1000},
              ["train.epochs=6", "train.lr=0.003", "model.head_channels=8"],
              ["train.epochs=4", *SMALL_UNPAIRED]),
    "v1000-e6-d5": ({"n_unpaired": 1000, "n_voxels": 1000},
                    ["train.epochs=6", "train.lr=0.003", "model.head_channels=8"],
                    ["train.epochs=5", "train.milestones=[]", "train.unpaired_image_batch=16",
                     "train.unpaired_fmri_batch=8"]),
    "r48-e8-d6": ({"n_unpaired": 1000, "resolution": 48},
                  ["data.resolution=48", "model.input_size=48", "train.epochs=8", "train.lr=0.003",
                   "model.head_channels=8"],
                  ["data.resolution=48", "train.epochs=6", "train.milestones=[]", "train.unpaired_image_batch=24",
                   "train.unpaired_fmri_batch=8"]),
    "e8-in48-d4": ({"n_unpaired": 1000},
                   ["train.epochs=8", "train.lr=0.003", "model.head_channels=8", "model.input_size=48"],
                   ["train.epochs=4", *SMALL_UNPAIRED]),
    "e5-d4": ({"n_unpaired": 1000},
              ["train.epochs=5", "train.lr=0.003", "model.head_channels=8"],
              ["train.epochs=4", *SMALL_UNPAIRED]),
    "e5-d4-m3": ({"n_unpaired": 1000},
                 ["train.epochs=5", "train.lr=0.003", "model.head_channels=8"],
                 ["train.epochs=4", *SMALL_UNPAIRED, "train.milestones=[3]"]),
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_candidate(out: Path, name: str, seed: int, amp_off: bool) -> list[dict]:
    import torch

    from brainrecon.demo import BUDGETS, DemoBudget, run_demo
    seed_sets = [f"train.seed={seed}"] if seed else []
    amp = ("train.amp=false",) if amp_off else ()
    if name in BUDGETS:          # exactly what `brainrecon demo` (default) or `demo --full` runs, with this seed
        budget = replace(BUDGETS[name], encoder_sets=tuple(seed_sets), decoder_sets=tuple(seed_sets), sets=amp)
    else:
        sim, enc, dec = CANDIDATES[name]
        budget = DemoBudget(name, replace(BUDGETS["full"].simulation, **sim), "demo", tuple([*enc, *seed_sets]),
                            tuple([*dec, *seed_sets]), sets=amp)
    folder = out / f"{name}_seed{seed}"
    result = run_demo(folder, "rgbd", budget, say=lambda s: print(s, file=sys.stderr, flush=True))
    stages = result["stage_seconds"]
    capability = torch.backends.cpu.get_cpu_capability()
    autocast = json.loads((folder / "decoder_rgbd" / "metrics.json").read_text())["autocast"]
    rows = []
    recs = {(r["run"], r["channel"], r["metric"], r["ways"]): r for r in result["records"]}
    for comp in result["comparisons"]:
        if comp["ways"] != 10 or comp["run_a"] != "decoder_rgbd" or comp["run_b"] != "ridge_rgbd":
            continue
        deep = recs[("decoder_rgbd", comp["channel"], comp["metric"], 10)]
        ridge = recs[("ridge_rgbd", comp["channel"], comp["metric"], 10)]
        rows.append({"candidate": name, "seed": seed, "channel": comp["channel"], "metric": comp["metric"], "ways": 10,
                     "deep": deep["mean"], "deep_ci_low": deep["ci_low"], "deep_ci_high": deep["ci_high"],
                     "ridge": ridge["mean"], "ridge_ci_low": ridge["ci_low"], "ridge_ci_high": ridge["ci_high"],
                     "diff": comp["diff"], "diff_ci_low": comp["ci_low"], "diff_ci_high": comp["ci_high"],
                     "p_value": comp["p_value"], "wall_seconds": round(result["seconds"], 1), "cpu": cpu_name(),
                     "torch_cpu_capability": capability, "autocast": autocast})
    stage_row = {"candidate": name, "seed": seed, **{s: round(stages.get(s, float("nan")), 1) for s in STAGES},
                 "wall_seconds": round(result["seconds"], 1), "cpu": cpu_name(), "torch_cpu_capability": capability,
                 "autocast": autocast}
    _append(out / "demo_budget_stages.csv", [stage_row], list(stage_row))
    _append(out / "demo_budget.csv", rows, list(COLUMNS))
    return rows


def _append(path: Path, rows: list[dict], columns: list[str]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerows(rows)


def report(out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    rows = list(csv.DictReader(open(out / "demo_budget.csv")))
    stages = list(csv.DictReader(open(out / "demo_budget_stages.csv")))
    names = list(dict.fromkeys(r["candidate"] for r in stages))
    fig, axes = plt.subplots(1, 1 + len(SHOWN), figsize=(4 + 3.2 * len(SHOWN), 0.6 * len(names) + 2.2))
    ax = axes[0]
    for i, name in enumerate(names):
        mine = [s for s in stages if s["candidate"] == name]
        left = 0.0
        for k, stage in enumerate(STAGES):
            v = np.nanmean([float(s[stage]) for s in mine]) / 60
            ax.barh(i, v, left=left, color=plt.cm.tab10(k), label=stage if i == 0 else None)
            left += v
    ax.axvline(5, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("minutes (mean over seeds)")
    ax.legend(fontsize=7, loc="lower right")
    for ax, (channel, metric) in zip(axes[1:], SHOWN):
        for i, name in enumerate(names):
            mine = [r for r in rows if r["candidate"] == name and r["channel"] == channel and r["metric"] == metric]
            for j, r in enumerate(mine):
                y = i + (j - (len(mine) - 1) / 2) * 0.15
                d, lo, hi = float(r["diff"]), float(r["diff_ci_low"]), float(r["diff_ci_high"])
                ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", ms=3, color="C0" if lo > 0 else "C3")
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(names)), [""] * len(names))
        ax.set_title(f"{channel} {metric}\n10-way deep - ridge", fontsize=9)
    cpu = stages[0]["cpu"] if stages else ""
    fig.suptitle(f"demo budgets: wall time and deep - ridge (95% CI over test images; one dot per seed); {cpu}, "
                 f"torch {stages[0]['torch_cpu_capability'] if stages else ''}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "demo_budget.png", dpi=110)
    for name in names:
        mine = [s for s in stages if s["candidate"] == name]
        walls = [float(s["wall_seconds"]) for s in mine]
        print(f"{name:14s} wall {np.mean(walls):6.0f}s over {len(walls)} seed(s) "
              + "  ".join(f"{s} {np.nanmean([float(m[s]) for m in mine]):.0f}s" for s in STAGES))
        for channel, metric in SHOWN:
            mine_r = [r for r in rows if r["candidate"] == name and r["channel"] == channel and r["metric"] == metric]
            text = "; ".join(f"seed {r['seed']}: deep {float(r['deep']):.3f} ridge {float(r['ridge']):.3f} diff "
                             f"{float(r['diff']):+.3f} [{float(r['diff_ci_low']):+.2f}, "
                             f"{float(r['diff_ci_high']):+.2f}]"
                             for r in mine_r)
            print(f"    {channel:5s} {metric:18s} {text}")


def markdown(out: Path) -> str:
    """The candidates (wall time per stage, deep - ridge per metric with its CI) and, for a candidate with several
    seeds, the mean and SD over seeds: the tables of docs/performance.md."""
    import numpy as np
    rows = list(csv.DictReader(open(out / "demo_budget.csv")))
    stages = list(csv.DictReader(open(out / "demo_budget_stages.csv")))
    head = "| candidate (seed) | wall s | " + " | ".join(f"{c} {m}" for c, m in SHOWN) + " |"
    lines = [head, "|" + "---|" * (2 + len(SHOWN))]
    for st in stages:
        mine = {(r["channel"], r["metric"]): r for r in rows if r["candidate"] == st["candidate"]
                and r["seed"] == st["seed"]}
        cells = [f"{float(mine[k]['diff']):+.3f} [{float(mine[k]['diff_ci_low']):+.2f}, "
                 f"{float(mine[k]['diff_ci_high']):+.2f}]" for k in SHOWN]
        name = f"{st['candidate']} ({st['seed']})"
        lines.append(f"| {name} | {float(st['wall_seconds']):.0f} | " + " | ".join(cells) + " |")
    for name in dict.fromkeys(r["candidate"] for r in rows):
        seeds = sorted({r["seed"] for r in rows if r["candidate"] == name})
        if len(seeds) < 2:
            continue
        lines += ["", f"| {name}, {len(seeds)} seeds | deep mean ± SD over seeds | ridge | deep - ridge per seed |",
                  "|---|---|---|---|"]
        for c, m in SHOWN:
            mine = [r for r in rows if r["candidate"] == name and (r["channel"], r["metric"]) == (c, m)]
            deep = np.array([float(r["deep"]) for r in mine])
            diffs = ", ".join(f"{float(r['diff']):+.3f} [{float(r['diff_ci_low']):+.2f}, "
                              f"{float(r['diff_ci_high']):+.2f}]" for r in mine)
            lines.append(f"| {c} {m} | {deep.mean():.3f} ± {deep.std(ddof=1):.3f} | {float(mine[0]['ridge']):.3f} | "
                         f"{diffs} |")
        walls = [float(s["wall_seconds"]) for s in stages if s["candidate"] == name]
        lines.append(f"wall: {np.mean(walls):.0f} s (range {min(walls):.0f}-{max(walls):.0f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.demo_budget", description=__doc__.split("\n\n")[1])
    ap.add_argument("action", choices=("run", "report"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="names from CANDIDATES, or default / full")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--as-avx2", action="store_true", help="measure as on a CPU without AVX-512: "
                    "torch's kernels at AVX2, fp32")
    args = ap.parse_args(argv)
    if args.action == "report":
        report(args.out)
        print(markdown(args.out))
        return
    if args.as_avx2 and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":   # before torch is imported
        os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.demo_budget", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.candidates.split(","):
            if name not in CANDIDATES and name not in ("default", "full"):
                sys.exit(f"unknown candidate {name!r}; choose from default, full, {', '.join(CANDIDATES)}")
            run_candidate(args.out, name, seed, args.as_avx2)
    report(args.out)
    print(markdown(args.out))


if __name__ == "__main__":
    main()
