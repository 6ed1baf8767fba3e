"""Scores for `python -m benchmarks.pairs_curve report OUT`: what the curve and cross modes have trained, per arm and
point (mean over seeds, seed spread, image-bootstrap CI of the seed-averaged per-image scores) and paired differences
(seed-averaged per-image scores of two arms on the same 50 test images: paired bootstrap CI, sign-flip p).

10-way identification among the test images, 100 draws per image, the same draws for every run; panels: RGB pixcorr,
RGB ssim, RGB perceptual-effnet (EfficientNet-Lite0 features: the network is also the decoder's perceptual loss and
the encoder's backbone, so the metric shares a network with the method), depth pixcorr.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmarks.pairs_study import ADAPT_POINTS, POINTS, label
from brainrecon.evaluation.compare import paired_difference
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.evaluation.statistics import bootstrap_ci
from brainrecon.reconstruct import NPZ, load_reconstructions

PANELS = (("rgb", "pixcorr"), ("rgb", "ssim"), ("rgb", "perceptual-effnet"), ("depth", "pixcorr"))
ARMS = {"self-supervised": ("curve", "self_supervised"), "pairs only": ("curve", "pairs_only"),
        "ridge": ("curve", "ridge"), "adapted from 4 subjects": ("adapted", "self_supervised")}
COLOURS = {"self-supervised": "tab:blue", "pairs only": "tab:orange", "ridge": "tab:grey",
           "adapted from 4 subjects": "tab:green"}
N_STIMULI = 1200
WAYS = 10


def _runs(out: Path) -> dict:
    """{(arm, point): [reconstruction files, one per seed]} of what is done."""
    found: dict = {}
    for arm, (prefix, sub) in ARMS.items():
        for point in POINTS:
            for seed in range(10):
                path = out / f"{prefix}_{label(point).replace('/', 'of')}_seed{seed}" / sub / "reconstruct_test" / NPZ
                if path.exists():
                    found.setdefault((arm, point), []).append(path)
    return found


def _seconds(runs: dict) -> dict:
    """{(arm, point): (mean training seconds of the decoder runs (metrics.json; the machine that trained them), the
    mean median test r / noise ceiling of the encoders behind their cycles, '' for arms without one)}."""
    import json
    out = {}
    for key, paths in runs.items():
        secs = [json.loads((p.parent.parent / "metrics.json").read_text())["seconds"] for p in paths]
        encoders = [p.parent.parent.parent / "encoder" / "metrics.json" for p in paths]
        ratio = [json.loads(e.read_text())["median_r_over_ceiling"] for e in encoders if e.exists()]
        uses_encoder = key[0] in ("self-supervised", "adapted from 4 subjects")
        out[key] = (round(float(np.mean(secs)), 1), round(float(np.mean(ratio)), 3) if ratio and uses_encoder else "")
    return out


def _scores(runs: dict, data: Path) -> dict:
    """{(arm, point, channel, metric): [per-image % correct, one array per seed]}."""
    opts = EvalOptions(ways=(WAYS,), metrics=("pixcorr", "ssim", "perceptual-effnet"), repeats=100, mode="percent")
    scores: dict = {}
    for (arm, point), paths in runs.items():
        for path in paths:
            for channel, metric, per_image in _scored(path, opts, data):
                scores.setdefault((arm, point, channel, metric), []).append(per_image)
    return scores


def _scored(path: Path, opts: EvalOptions, data: Path, panels: tuple = PANELS,
            cache_name: str = "scores_10way.npz") -> list[tuple]:
    """(channel, metric, per-image scores) of one reconstruction file for `panels`, kept beside it (`cache_name`) so
    that a rerun of the report scores only what is new."""
    cache = path.parent / cache_name
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        with np.load(cache) as z:
            return [(*k.split("|"), z[k]) for k in z.files]
    records, _ = evaluate_runs([load_reconstructions(path)], opts, data)
    found = [(r["channel"], r["metric"], r["per_image"]) for r in records if (r["channel"], r["metric"]) in panels]
    np.savez(cache, **{f"{c}|{m}": v for c, m, v in found})
    return found


def _pairs_of(scores: dict) -> list[tuple]:
    """(arm a, point a, arm b, point b) comparisons: at each point the self-supervised decoder against the pairs-only
    one and ridge, the adapted model against the from-scratch one and ridge; and the adapted model at each point
    against the from-scratch model on all pairs (the cross-subject goal)."""
    pairs = []
    for point in POINTS:
        pairs += [("self-supervised", point, "pairs only", point), ("self-supervised", point, "ridge", point),
                  ("pairs only", point, "ridge", point)]
    for point in ADAPT_POINTS:
        pairs += [("adapted from 4 subjects", point, "self-supervised", point),
                  ("adapted from 4 subjects", point, "ridge", point),
                  ("adapted from 4 subjects", point, "self-supervised", 0)]
    keys = {(k[0], k[1]) for k in scores}
    return [p for p in pairs if (p[0], p[1]) in keys and (p[2], p[3]) in keys]


def _pairs_count(point: float) -> int:
    return N_STIMULI if point == 0 else round(point * N_STIMULI)


def report(out: Path) -> None:
    data = out / "data"
    runs = _runs(out)
    scores, seconds = _scores(runs, data), _seconds(runs)
    arm_rows, pair_rows = [], []
    for (arm, point, channel, metric), per_seed in sorted(scores.items(), key=lambda kv: (kv[0][0], -_pairs_count(
            kv[0][1]), kv[0][2], kv[0][3])):
        seed_means = [float(np.mean(p)) for p in per_seed]
        lo, hi = bootstrap_ci(np.mean(per_seed, 0), np.random.default_rng(0))
        arm_rows.append({"arm": arm, "pairs": _pairs_count(point), "fraction": label(point), "channel": channel,
                         "metric": metric, "ways": WAYS, "seeds": len(per_seed),
                         "mean": round(float(np.mean(seed_means)), 4),
                         "seed_sd": round(float(np.std(seed_means, ddof=1)), 4) if len(per_seed) > 1 else "",
                         "seed_means": " ".join(f"{m:.3f}" for m in seed_means),
                         "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                         "decoder_seconds": seconds[(arm, point)][0],
                         "encoder_r_over_ceiling": seconds[(arm, point)][1]})
    for a, pa, b, pb in _pairs_of(scores):
        for channel, metric in PANELS:
            sa, sb = scores.get((a, pa, channel, metric)), scores.get((b, pb, channel, metric))
            if sa is None or sb is None:
                continue
            stats = paired_difference(np.mean(sa, 0), np.mean(sb, 0))
            per_seed = [float(np.mean(x) - np.mean(sb[k % len(sb)])) for k, x in enumerate(sa)]
            pair_rows.append({"a": a, "pairs_a": _pairs_count(pa), "b": b, "pairs_b": _pairs_count(pb),
                              "channel": channel, "metric": metric, "ways": WAYS, "seeds_a": len(sa),
                              "seeds_b": len(sb),
                              **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()},
                              "per_seed_diffs": " ".join(f"{d:+.3f}" for d in per_seed)})
    _write(out / "pairs_curve.csv", arm_rows)
    _write(out / "pairs_curve_pairs.csv", pair_rows)
    _plot(arm_rows, out / "pairs_curve.png")
    for r in pair_rows:
        print(f"{r['a']:>24s} @{r['pairs_a']:>4d} - {r['b']:<16s} @{r['pairs_b']:>4d} {r['channel']:<5s} "
              f"{r['metric']:<18s} {r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
              f"seeds {r['per_seed_diffs']}")


def _write(path: Path, rows: list[dict]) -> None:
    if not rows:
        print(f"nothing to write to {path}")
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def _plot(rows: list[dict], path: Path) -> None:
    """One panel per metric: % correct against the number of pairs (log scale), each arm's seed mean with the seed SD
    as error bars and the seeds as dots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.6), sharex=True)
    for ax, (channel, metric) in zip(axes, PANELS):
        for arm, colour in COLOURS.items():
            pts = sorted((r["pairs"], r["mean"], r["seed_sd"] or 0.0, r["seed_means"]) for r in rows
                         if r["arm"] == arm and r["channel"] == channel and r["metric"] == metric)
            if not pts:
                continue
            x, m, sd, seeds = zip(*pts)
            ax.errorbar(x, m, yerr=sd, fmt="o-", color=colour, label=arm, capsize=3, ms=4)
            for xi, s in zip(x, seeds):
                vals = [float(v) for v in s.split()]
                ax.plot([xi] * len(vals), vals, ".", color=colour, alpha=0.4, ms=3)
        ax.axhline(1 / WAYS, color="k", lw=0.8, ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xticks([75, 150, 300, 1200], ["75", "150", "300", "1200"])
        ax.set_title(f"{channel} {metric}, {WAYS}-way", fontsize=9)
        ax.set_xlabel("training pairs of the new subject", fontsize=8)
        ax.set_ylim(0, 0.6)
    axes[0].set_ylabel("fraction correct (seed mean, SD bars)")
    axes[0].legend(fontsize=7)
    fig.suptitle("SIMULATED group (SOC model), subject 5: identification against the number of paired samples, equal "
                 "optimisation steps at every point", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")
