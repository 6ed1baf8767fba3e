"""python -m benchmarks.soc_study {ablation|luminance|epochs|seeds|seeds-report} OUT [SEEDS]: the method against
ridge on the SOC subject.

All three on the --full demo's subject (brainrecon.demo.DEMO_SUBJECT, seed 0), the demo configs, the same seeds, 95 %
bootstrap CIs; every stage already done in OUT is reused (the ablation reuses a `brainrecon demo --out OUT` folder).

- ablation:  ridge, supervised-only deep, self-supervised without the DE cycle, self-supervised (the demo's decoder),
             and the same self-supervised decoder trained on RGB only. pixcorr, ssim, perceptual-effnet at 2/5/10-way,
             semantic-50way (always 50 classes), the depth channel and the depth errors.
             -> OUT/ablation.csv, OUT/ablation_depth_errors.csv
- luminance: simulate --luminance-share in {0, 0.05, 0.1, 0.3}; ridge vs the self-supervised decoder on each.
             -> OUT/luminance_sweep.csv, OUT/luminance_sweep.png
- epochs:    the self-supervised decoder after 5, 10, 20 and 40 epochs of one run at a constant learning rate (the
             demo's milestone dropped so that every point is the same schedule), against the ridge line.
             -> OUT/learning_curve.csv, OUT/learning_curve.png
- seeds:     five decoder arms (supervised only, self-supervised, ED only, self-supervised rgb only, the same
             with the DE cycle on training fMRI) x SEEDS decoder seeds (default 3), ridge, and the paired differences
             of SEED_PAIRS on the seed-averaged per-image scores, with the seed spread. Seed by seed, so a study cut
             short still pairs every arm; seeds-report scores only what is done. -> OUT/seeds_arms.csv,
             OUT/seeds_pairs.csv (15 decoder trainings: ~3.5 h on 2 cores without bf16). Its encoders read depth as
             a grey image for 18 epochs (SEEDS_ENCODER: the demo's encoder when the committed study ran).
Long: the ablation ~15 min, luminance ~25 min, epochs ~30 min on 2 cores. The committed results are in
benchmarks/results/.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import replace
from pathlib import Path

from brainrecon.config import load_config
from brainrecon.demo import DEMO_SUBJECT, run_demo
from brainrecon.evaluation.identification import EvalOptions, evaluate_runs
from brainrecon.reconstruct import NPZ, load_reconstructions, reconstruct
from brainrecon.simulation.simulate import simulate_subject
from brainrecon.train.decoder import train_decoder
from brainrecon.train.encoder import train_encoder

METRICS = ("pixcorr", "ssim", "perceptual-effnet", "semantic-50way")
SHARES = (0.0, 0.05, 0.1, 0.3)
EPOCHS = (5, 10, 20, 40)


def subject(data: Path, share: float = DEMO_SUBJECT.luminance_share) -> Path:
    if not (data / "simulated.json").exists():
        simulate_subject(data, replace(DEMO_SUBJECT, luminance_share=share))
    return data


def encoder(data: Path, out: Path, modality: str = "rgbd", sets: list[str] | None = None) -> Path:
    if not (out / "metrics.json").exists():
        train_encoder(load_config("encoder", modality, "demo", sets), data, out, resume=(out / "last.pt").exists(),
                      quiet=True)
    return out


def decoder(data: Path, out: Path, sets: list[str], encoder_run: Path | None, modality: str = "rgbd") -> Path:
    """Train (or reuse) a decoder run and its test reconstructions; returns the reconstruction file."""
    if not (out / "metrics.json").exists():
        train_decoder(load_config("decoder", modality, "demo", sets), data, out, encoder_run=encoder_run,
                      resume=(out / "last.pt").exists() or (out / "best.pt").exists(), quiet=True)
    path = out / "reconstruct_test" / NPZ
    return path if path.exists() else reconstruct(out, "test", data_dir=data)


def evaluate(paths: dict[str, Path], data: Path, metrics=METRICS, ways=(2, 5, 10)) -> tuple[list, list]:
    """Identification and depth-error rows, each labelled with its variant name."""
    opts = EvalOptions(ways=ways, metrics=metrics, repeats=100, mode="percent")
    rows, depth_rows = [], []
    for name, path in paths.items():
        records, depth = evaluate_runs([load_reconstructions(path)], opts, data)
        rows += [{"variant": name, "channel": r["channel"], "metric": r["metric"], "ways": r["ways"],
                  "mean": round(r["mean"], 4), "ci_low": round(r["ci_low"], 4), "ci_high": round(r["ci_high"], 4)}
                 for r in records]
        depth_rows += [{"variant": name, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()
                                            if k not in ("run", "subject", "modality")}} for d in depth]
    return rows, depth_rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def ablation(out: Path) -> None:
    run_demo(out, "rgbd", "full")               # data, encoder, self-supervised decoder, ridge (reused when done)
    data, enc = out / "data", out / "encoder_rgbd"
    paths = {
        "ridge": out / "ridge_rgbd" / "reconstruct_test" / NPZ,
        "supervised only": decoder(data, out / "decoder_supervised", ["train.self_supervision=false"], enc),
        "self-supervised, no DE": decoder(data, out / "decoder_no_de", ["loss.weights=[1.0,1.0,0.0]"], enc),
        "self-supervised": out / "decoder_rgbd" / "reconstruct_test" / NPZ,
        "self-supervised, rgb only": decoder(data, out / "decoder_rgb", [], encoder(data, out / "encoder_rgb", "rgb"),
                                             "rgb"),
    }
    rows, depth_rows = evaluate(paths, data)
    write_csv(out / "ablation.csv", rows)
    write_csv(out / "ablation_depth_errors.csv", depth_rows)
    for r in rows:
        print(f"{r['variant']:<27s} {r['channel']:<5s} {r['metric']:<28s} {r['ways']:>2} "
              f"{r['mean']:.3f} [{r['ci_low']:.2f}-{r['ci_high']:.2f}]")


def luminance(out: Path) -> None:
    rows = []
    for share in SHARES:
        root = out / f"share_{share:g}"
        data = subject(root / "data", share)
        enc = encoder(data, root / "encoder_rgbd")
        paths = {"ridge": decoder(data, root / "ridge_rgbd", ["model.kind=ridge"], None),
                 "self-supervised": decoder(data, root / "decoder_rgbd", [], enc)}
        found, _ = evaluate(paths, data, METRICS, ways=(2, 10))
        rows += [{"luminance_share": share, **r} for r in found]
        write_csv(out / "luminance_sweep.csv", rows)
    _plot(rows, "luminance_share", "--luminance-share", "demo budget, one subject per share",
          out / "luminance_sweep.png")


def epochs(out: Path) -> None:
    data = subject(out / "data")
    enc = encoder(data, out / "encoder_rgbd")
    rows = []
    ridge, _ = evaluate({"ridge": decoder(data, out / "ridge_rgbd", ["model.kind=ridge"], None)}, data,
                        METRICS, ways=(2, 10))
    run = out / "decoder_constant_lr"
    for n in EPOCHS:                            # one run, resumed to each count: the points share one schedule
        snapshot = out / f"decoder_constant_lr_{n}" / "reconstruct_test" / NPZ
        if not snapshot.exists():
            train_decoder(load_config("decoder", "rgbd", "demo", [f"train.epochs={n}", "train.milestones=[]"]), data,
                          run, encoder_run=enc, resume=(run / "last.pt").exists(), quiet=True)
            snapshot.parent.mkdir(parents=True, exist_ok=True)
            reconstruct(run, "test", data_dir=data).replace(snapshot)
        found, _ = evaluate({"self-supervised": snapshot}, data, METRICS, ways=(2, 10))
        rows += [{"epochs": n, **r} for r in found]
    rows += [{"epochs": n, **r} for n in EPOCHS for r in ridge]
    write_csv(out / "learning_curve.csv", rows)
    _plot(rows, "epochs", "decoder epochs", "one run at a constant learning rate; ridge: closed form",
          out / "learning_curve.png")


SEEDS_ENCODER = ["model.depth_input=grey", "train.epochs=18"]
SEED_ARMS = {  # name: (decoder overrides, modality), in training order: the central claims first
    "supervised only": (["train.self_supervision=false"], "rgbd"),
    "self-supervised": ([], "rgbd"),
    "ED only": (["loss.weights=[1.0,1.0,0.0]"], "rgbd"),
    "self-supervised, rgb only": ([], "rgb"),
    "self-supervised, DE on training fMRI": (["data.unpaired_fmri=train"], "rgbd"),
}
SEED_PAIRS = (("self-supervised", "supervised only"), ("self-supervised", "ridge"),
              ("self-supervised", "self-supervised, rgb only"), ("ED only", "supervised only"),
              ("self-supervised", "self-supervised, DE on training fMRI"))
SHARES_A_NETWORK = {"perceptual-effnet": "EfficientNet-Lite0: the decoder's perceptual loss (and, with "
                    "model.arch=effnet-lite0, the encoder's backbone)", "semantic-50way/effnet-lite0": "the same "
                    "EfficientNet-Lite0 as classifier"}


def seeds(out: Path, n_seeds: int = 3, train: bool = True) -> None:
    """Every arm trained with `n_seeds` decoder seeds (one encoder per modality, the demo's), seed by seed (every arm's
    seed 0, then every arm's seed 1, ...), so that a study cut short still pairs every arm. Per arm and metric: the
    mean over seeds with the seed spread (SD of the seed means) beside the image-bootstrap CI of the seed-averaged
    per-image scores; per pair: the paired difference of the seed-averaged per-image scores (paired bootstrap CI and
    sign-flip p over images, brainrecon.evaluation.compare). With train=False (mode seeds-report) only the runs
    already done are scored, each arm over the seeds it has. -> OUT/seeds_arms.csv, OUT/seeds_pairs.csv"""
    import numpy as np

    from brainrecon.evaluation.compare import paired_difference
    from brainrecon.evaluation.statistics import bootstrap_ci
    data = subject(out / "data")
    encoders = {"rgbd": out / "encoder_rgbd", "rgb": out / "encoder_rgb"}
    runs = {"ridge": [decoder(data, out / "ridge_rgbd", ["model.kind=ridge"], None)]}
    for s in range(n_seeds):
        for arm, (sets, modality) in SEED_ARMS.items():
            run = out / f"{arm.replace(', ', '_').replace(' ', '_')}_seed{s}"
            if train:
                enc = encoder(data, encoders[modality], modality, SEEDS_ENCODER)
                decoder(data, run, [*sets, f"train.seed={s}"], enc, modality)
            if (run / "reconstruct_test" / NPZ).exists():
                runs.setdefault(arm, []).append(run / "reconstruct_test" / NPZ)
    opts = EvalOptions(ways=(2, 10), metrics=METRICS, repeats=100, mode="percent")
    scores: dict = {}
    for arm, paths in runs.items():
        for path in paths:
            records, _ = evaluate_runs([load_reconstructions(path)], opts, data)
            for r in records:
                scores.setdefault((arm, r["channel"], r["metric"], r["ways"]), []).append(r["per_image"])
    arm_rows, pair_rows = [], []
    for (arm, channel, metric, ways), per_seed in scores.items():
        seed_means = [float(np.mean(p)) for p in per_seed]
        lo, hi = bootstrap_ci(np.mean(per_seed, 0), np.random.default_rng(0))
        arm_rows.append({"arm": arm, "channel": channel, "metric": metric, "ways": ways, "seeds": len(per_seed),
                         "mean": round(float(np.mean(seed_means)), 4),
                         "seed_sd": round(float(np.std(seed_means, ddof=1)), 4) if len(per_seed) > 1 else "",
                         "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                         "shares_a_network_with": SHARES_A_NETWORK.get(metric, "")})
    for a, b in SEED_PAIRS:
        for (arm, channel, metric, ways), per_seed in scores.items():
            other = scores.get((b, channel, metric, ways))
            if arm != a or other is None:
                continue
            stats = paired_difference(np.mean(per_seed, 0), np.mean(other, 0))
            # seed k of a against seed k of b (ridge: its one run): the spread a single-seed comparison would have
            per_seed_diffs = [float(np.mean(x) - np.mean(other[k % len(other)])) for k, x in enumerate(per_seed)]
            pair_rows.append({"a": a, "b": b, "channel": channel, "metric": metric, "ways": ways,
                              "seeds_a": len(per_seed), "seeds_b": len(other),
                              **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()},
                              "per_seed_diffs": " ".join(f"{d:+.3f}" for d in per_seed_diffs),
                              "shares_a_network_with": SHARES_A_NETWORK.get(metric, "")})
    write_csv(out / "seeds_arms.csv", arm_rows)
    write_csv(out / "seeds_pairs.csv", pair_rows)
    _plot_pairs(pair_rows, out / "seeds_pairs.png")


PAIR_PANELS = (("rgb", "pixcorr", 10), ("rgb", "ssim", 10), ("rgb", "perceptual-effnet", 10),
               ("rgb", "semantic-50way/effnet-lite0", 50), ("depth", "pixcorr", 10), ("depth", "ssim", 10))


def _plot_pairs(pair_rows: list[dict], path: Path) -> None:
    """One panel per metric: each pair's difference in % correct with its paired 95 % CI, and the per-seed
    differences as dots (the spread one seed per arm would show)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pairs = list(dict.fromkeys((r["a"], r["b"]) for r in pair_rows))
    fig, axes = plt.subplots(1, len(PAIR_PANELS), figsize=(3.3 * len(PAIR_PANELS), 0.55 * len(pairs) + 1.6),
                             sharey=True)
    for ax, (channel, metric, ways) in zip(axes, PAIR_PANELS):
        for y, (a, b) in enumerate(pairs):
            row = next((r for r in pair_rows if (r["a"], r["b"]) == (a, b) and r["channel"] == channel
                        and r["metric"] == metric and r["ways"] == ways), None)
            if row is None:
                continue
            colour = "tab:blue" if row["ci_low"] > 0 else "tab:red" if row["ci_high"] < 0 else "tab:grey"
            ax.errorbar(row["diff"], y, xerr=[[row["diff"] - row["ci_low"]], [row["ci_high"] - row["diff"]]],
                        fmt="o", color=colour, capsize=3)
            seeds = [float(d) for d in row["per_seed_diffs"].split()]
            ax.plot(seeds, [y + 0.2] * len(seeds), "x", color=colour, alpha=0.6, ms=4)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"{channel} {metric.split('/')[0]}, {ways}-way", fontsize=9)
        ax.set_xlabel("a - b, fraction correct", fontsize=8)
    axes[0].set_yticks(range(len(pairs)))
    axes[0].set_yticklabels([f"{a}\n- {b}" for a, b in pairs], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("SIMULATED subject (SOC model): paired differences of seed-averaged per-image scores, 95 % paired "
                 "bootstrap CI (o), per-seed differences (x)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")


def _plot(rows: list[dict], x_key: str, x_label: str, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("rgb", "pixcorr", 10), ("rgb", "ssim", 10), ("rgb", "perceptual-effnet", 10),
              ("rgb", "semantic-50way/effnet-lite0", 50), ("depth", "pixcorr", 10)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), sharex=True)
    for ax, (channel, metric, ways) in zip(axes, panels):
        for variant, colour in (("ridge", "tab:grey"), ("self-supervised", "tab:blue")):
            pts = sorted((r[x_key], r["mean"], r["ci_low"], r["ci_high"]) for r in rows if r["variant"] == variant
                         and r["channel"] == channel and r["metric"] == metric and r["ways"] == ways)
            if pts:
                x, m, lo, hi = zip(*pts)
                ax.plot(x, m, "o-", color=colour, label=variant)
                ax.fill_between(x, lo, hi, color=colour, alpha=0.2)
        ax.axhline(1 / ways, color="k", lw=0.8, ls=":", label="chance")
        ax.set_title(f"{channel} {metric.split('/')[0]}, {ways}-way", fontsize=9)
        ax.set_xlabel(x_label, fontsize=8)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("% correct (95 % CI)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"SIMULATED subject (SOC model): {title}", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]
    if mode in ("seeds", "seeds-report"):
        seeds(Path(out), int(rest[0]) if rest else 3, train=mode == "seeds")
    else:
        {"ablation": ablation, "luminance": luminance, "epochs": epochs}[mode](Path(out))
