"""python -m benchmarks.few_pairs {curves|study|report|fresh|report-fresh} OUT [REGIME] [SEEDS]: self-supervision
where pairs are few, on a SIMULATED subject in two noise regimes (docs/results.md, "Self-supervision where pairs are
few").

- curves REGIME: the learning curves that fix the budgets before any mechanism result: the encoder at each of
          ENCODER_CURVE epochs, then the pairs-only and self-supervised decoders at each of DECODER_CURVE epochs, at the
          smallest and the largest pair count, seed 0. -> OUT/<regime>/curves.csv
- study REGIME [SEEDS [ARMS [POINTS]]]: the first ARMS arms of RUN_ORDER (default all; or their folder names,
          comma-separated, e.g. default_without_ridge_anchor) at POINTS (e.g.
          1/16,all; default every point of POINTS), SEEDS
          seeds (default 3), seed-major, at the budgets of BUDGET. Every stage done in OUT is reused, so a study
          cut short resumes.
- fresh REGIME [N]: the subject on N (default 500) fresh test scenes, OUT/<regime>/data_fresh<N>, and every kept
          decoder of the regime reconstructed on them (benchmarks/few_pairs_fresh.py); report-fresh [N] scores
          them -> OUT/few_pairs_fresh<N>.csv, _pairs.csv, _tables.md, .png.
- report [EARLIER]: score what is done (10-way identification: RGB pixcorr, RGB ssim, depth pixcorr, depth ssim, and
          perceptual-effnet, which shares EfficientNet-Lite0 with the method) -> OUT/few_pairs.csv,
          OUT/few_pairs_pairs.csv, OUT/few_pairs.png; with EARLIER (e.g. benchmarks/results), the rows of
          its CSVs for runs OUT no longer holds are carried (column `carried`; an earlier row of more seeds is
          kept over a rerun of fewer).

Shrunk to fit two cores (said in docs/results.md): one subject (5 of a simulated group of 5: the group is written
for the cross-subject study), 600 voxels, 32-px stimuli, 1,000 unpaired images. Every decoder keeps its last epoch
(`data.val_fraction=0`): no selection on a handful of validation images. Every arm is inductive
(`data.unpaired_fmri=train`): the DE cycle reads the subject's kept training fMRI, never its test fMRI.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.pairs_curve import recon, train_stage
from brainrecon.simulation.group import simulate_group
from brainrecon.simulation.simulate import SimulationConfig

GROUP, NEW = (1, 2, 3, 4, 5), 5
SIMULATION = SimulationConfig(seed=0, n_voxels=600, n_unpaired=1000, resolution=32)
REGIMES = {"standard": 0.2, "hard": 0.05}   # median single-trial reliability (simulate --reliability)
POINTS = (1 / 16, 1 / 8, 1 / 4, 0)          # 0: all 1,200 pairs
COMMON = ["data.resolution=32", "data.val_fraction=0", "data.unpaired_fmri=train"]
ENCODER_SETS = ["model.input_size=32", "train.steps_per_epoch=18"]
DECODER_SETS = ["train.steps_per_epoch=50"]
ENCODER_CURVE = (5, 10, 20, 40)             # epochs of 18 steps of 64 pairs
DECODER_CURVE = (4, 8, 16)                  # epochs of 50 steps of 24 pairs, the lr x0.2 for the last
BUDGET = {"encoder": 40, "decoder": 16}      # fixed from curves.csv (docs/results.md): the encoder selects by its own
                                            # validation loss within 40 epochs
# arm -> (decoder settings, which encoder drives its cycles: 'own' (same pairs), 'all' (the oracle: all pairs),
# 'group' (adapted to the point's pairs from an encoder of subjects 1-4 on all their pairs), 'ridge' (a closed-form
# read-out of the frozen backbone on the same pairs: train-encoder --model ridge), None)
ARMS = {
    "pairs only": (["train.self_supervision=false"], None),
    "both cycles": ([], "own"),
    "both cycles, encoder on all pairs (oracle)": ([], "all"),
    "ED only": (["loss.weights=[1.0,1.0,0.0]"], "own"),
    "DE only": (["loss.weights=[1.0,0.0,1.0]"], "own"),
    "both cycles, encoder adapted from a group": ([], "group"),
    "ridge": (["model.kind=ridge"], None),
    # the mechanisms (docs/results.md): config switches, off in the paper presets
    "default": (["loss.ed_noise=true", "model.ridge_anchor=true"], "own"),
    "default without ed_noise": (["model.ridge_anchor=true"], "own"),
    "default without ridge_anchor": (["loss.ed_noise=true"], "own"),
    "pairs only, anchored": (["train.self_supervision=false", "model.ridge_anchor=true"], None),
    "both cycles, residual ED noise": (["loss.ed_noise=true", "loss.ed_noise_from=residual"], "own"),
    "both cycles, encoder-r DE weights": (["loss.de_voxel_weights=encoder_r"], "own"),
    "both cycles, ridge read-out encoder": ([], "ridge"),
    # the eighth pass: the DE cycle on the test fMRI without their images (the paper's described choice, transductive;
    # every other arm is inductive), and the ED cycle on the paper's 48 unpaired images per step (the study's: 24)
    "both cycles, transductive": (["data.unpaired_fmri=test"], "own"),
    "both cycles, 48 unpaired images": (["train.unpaired_image_batch=48"], "own"),
}
# the order in which arms run within a cell (the last ones are dropped first where time runs short)
RUN_ORDER = ("pairs only", "ridge", "both cycles", "default", "both cycles, encoder on all pairs (oracle)",
             "default without ed_noise", "both cycles, encoder adapted from a group", "pairs only, anchored",
             "default without ridge_anchor", "ED only", "DE only", "both cycles, encoder-r DE weights",
             "both cycles, residual ED noise", "both cycles, ridge read-out encoder", "both cycles, transductive",
             "both cycles, 48 unpaired images")


def label(point: float) -> str:
    return "all" if point == 0 else f"1of{round(1 / point)}"


def data_dir(out: Path, regime: str) -> Path:
    data = out / regime / "data"
    if not (data / "simulated.json").exists():
        simulate_group(data, replace(SIMULATION, median_reliability=REGIMES[regime]), list(GROUP))
    return data


def train(stage: str, data: Path, run: Path, sets: list[str], **kwargs) -> Path:
    """One stage with the study's settings (pairs_curve's runner: the same preset, reused when done)."""
    return train_stage(stage, data, run, [*COMMON, *(ENCODER_SETS if stage == "encoder" else DECODER_SETS), *sets],
                       **kwargs)


def point_sets(point: float, seed: int) -> list[str]:
    return [f"data.subject={NEW}", f"data.pairs={point}", f"train.seed={seed}"]


def epochs(stage: str, n: int) -> list[str]:
    return [f"train.epochs={n}"] + ([f"train.milestones=[{n - 1}]"] if stage == "decoder" else [])


def encoder(data: Path, root: Path, point: float, seed: int, n: int, select: bool = False,
            init_from: Path | None = None) -> Path:
    """The encoder of (point, seed) at n epochs; shared by every arm and seed-paired with them. `select`: the study's
    encoders keep their own validation split (data.val_fraction 0.05, the val_min ramp) and the epoch of lowest
    validation loss (the curves showed the encoder overfitting without one). `init_from`: adapted from that
    encoder (a group's)."""
    name = encoder_name(label(point), seed, n, select, "group" if init_from else "own")
    return train("encoder", data, root / name, [*point_sets(point, seed), *epochs("encoder", n),
                                               *(["data.val_fraction=0.05"] if select else []),
                                               *([f"train.init_from={init_from}"] if init_from else [])])


def encoder_name(point: str, seed: int, n: int, select: bool = True, which: str = "own") -> str:
    """The folder of the encoder behind an arm's cycles (`which`: 'own', 'all', 'group' or 'ridge'; `point`: its
    label)."""
    if which == "ridge":                       # closed form: no epochs; its validation split held out and unused
        return f"encoder_{point}_seed{seed}_ridge"
    return (f"encoder_{'all' if which == 'all' else point}_seed{seed}_e{n}" + ("_val" if select else "")
            + ("_from_group" if which == "group" else ""))


def cycle_encoder(data: Path, root: Path, which: str | None, point: float, seed: int) -> Path | None:
    """The encoder behind an arm's cycles at (point, seed), trained if not done (`which`: ARMS' second field)."""
    if which is None:
        return None
    if which == "ridge":                       # the ridge read-out on the frozen backbone (train-encoder --model ridge)
        return train("encoder", data, root / encoder_name(label(point), seed, 0, which="ridge"),
                     [*point_sets(point, seed), "model.kind=ridge", "model.depth_input=grey", "data.val_fraction=0.05"])
    init = group_encoder(data, root, seed) if which == "group" else None
    return encoder(data, root, 0 if which == "all" else point, seed, BUDGET["encoder"], select=True, init_from=init)


def group_encoder(data: Path, root: Path, seed: int) -> Path:
    """Subjects 1-4 on all their pairs (training seed `seed`), with the study's encoder budget and selection."""
    others = ",".join(str(s) for s in GROUP if s != NEW)
    return train("encoder", data, root / f"group_encoder_seed{seed}_e{BUDGET['encoder']}_val",
                 [f"data.subjects=[{others}]", f"train.seed={seed}", *epochs("encoder", BUDGET["encoder"]),
                  "data.val_fraction=0.05"])


def curves(out: Path, regime: str) -> None:
    data, root = data_dir(out, regime), out / regime / "curves"
    rows = []
    for point in (POINTS[0], POINTS[-1]):
        for n in ENCODER_CURVE:
            run = encoder(data, root, point, 0, n)
            m = json.loads((run / "metrics.json").read_text())
            rows.append({"regime": regime, "stage": "encoder", "arm": "encoder", "fraction": label(point),
                         "epochs": n, "steps": n * 18, "median_test_r": round(m["median_r"], 4),
                         "r_over_ceiling": round(m["median_r_over_ceiling"], 4)})
        enc = encoder(data, root, point, 0, max(ENCODER_CURVE))
        for n in DECODER_CURVE:
            for arm in ("pairs only", "both cycles"):
                sets, which = ARMS[arm]
                run = root / f"{arm.replace(' ', '_')}_{label(point)}_e{n}"
                kwargs = {"encoder_run": enc} if which else {}
                recon(data, train("decoder", data, run, [*point_sets(point, 0), *sets, *epochs("decoder", n)],
                                  **kwargs))
                rows.append({"regime": regime, "stage": "decoder", "arm": arm, "fraction": label(point),
                             "epochs": n, "steps": n * 50, "run": str(run.relative_to(out))})
    with open(out / regime / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)


def study(out: Path, regime: str, n_seeds: int = 3, arms: tuple[str, ...] = RUN_ORDER,
          points: tuple[float, ...] = POINTS) -> None:
    """Seed-major: every point's seed 0 first, so a study cut short still pairs every arm at every point."""
    data, root = data_dir(out, regime), out / regime / "study"
    for seed in range(n_seeds):
        for point in points:
            cycle_encoder(data, root, "own", point, seed)
            for arm in arms:
                sets, which = ARMS[arm]
                enc = cycle_encoder(data, root, which, point, seed)
                run = root / f"{label(point)}_seed{seed}" / arm_folder(arm)
                recon(data, train("decoder", data, run, [*point_sets(point, seed), *sets,
                                                         *epochs("decoder", BUDGET["decoder"])],
                                  **({"encoder_run": enc} if enc else {})))


def fresh(out: Path, regime: str, n_images: int = 500) -> None:
    """The study's subject on `n_images` fresh test scenes (OUT/<regime>/data_fresh<N>), and every kept decoder of
    the regime reconstructed on them (benchmarks/few_pairs_fresh.py)."""
    from benchmarks.few_pairs_fresh import fresh_data, reconstruct_kept
    data = out / regime / "data"
    if not (data / "simulated.json").exists():
        raise SystemExit(f"{data}: no study data there; run `study OUT {regime}` first")
    data = fresh_data(data, replace(SIMULATION, median_reliability=REGIMES[regime]), NEW, n_images)
    for path in reconstruct_kept(out / regime / "study", data, n_images):
        print(path, flush=True)


def report(out: Path, earlier: Path | None = None, n_fresh: int = 0) -> None:
    """Score what is done in OUT; with `earlier` (a folder holding an earlier report's few_pairs.csv and
    few_pairs_pairs.csv), its rows for arms and differences that OUT no longer holds are carried, marked so; with
    `n_fresh`, the reconstructions on the fresh test set of that many images instead (few_pairs_fresh<N>.*; the
    column encoder_median_r stays each encoder's own, on the release's 50 test images)."""
    from benchmarks.few_pairs_fresh import fresh_name
    from benchmarks.few_pairs_plots import plot_arms, plot_curves
    from benchmarks.few_pairs_report import arm_rows, carry_earlier, markdown, pair_rows, study_scores, write_csv
    test = fresh_name(n_fresh) if n_fresh else "test"
    scores, extra = study_scores(out, {arm_folder(a): a for a in ARMS}, {a: w for a, (_, w) in ARMS.items()},
                                 lambda point, seed, which: encoder_name(point, seed, BUDGET["encoder"], which=which),
                                 test)
    arms, pairs = arm_rows(scores, extra), pair_rows(scores)
    if earlier is not None:
        arms, pairs = carry_earlier(arms, pairs, earlier / "few_pairs.csv", earlier / "few_pairs_pairs.csv")
    stem = "few_pairs" + (f"_{test}" if n_fresh else "")
    write_csv(out / f"{stem}.csv", arms)
    write_csv(out / f"{stem}_pairs.csv", pairs)
    plot_arms(arms, out / f"{stem}.png", title=f"SIMULATED subject, few pairs, {n_fresh} fresh test images"
              if n_fresh else "SIMULATED subject, few pairs")
    if not n_fresh:
        plot_curves(out)
    (out / f"{stem}_tables.md").write_text(markdown(arms, pairs) + "\n")
    for r in pairs:
        print(f"{r['regime']:>8s} {r['fraction']:>5s} {r['a']:>12.12s} - {r['b']:<12.12s} {r['channel']:<5s} "
              f"{r['metric']:<18s} {r['diff']:+.3f} img [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
              f"hier [{r['h_ci_low']:+.3f}, {r['h_ci_high']:+.3f}] seeds {r['per_seed_diffs']}")


def arm_folder(arm: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in arm).strip("_")


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]
    if mode == "curves":
        curves(Path(out), rest[0])
    elif mode == "study":
        n_arms = rest[2] if len(rest) > 2 else str(len(RUN_ORDER))          # the first N of RUN_ORDER, or names
        arms = RUN_ORDER[:int(n_arms)] if n_arms.isdigit() else tuple(a for a in RUN_ORDER
                                                                       if arm_folder(a) in n_arms.split(","))
        points = tuple(0 if p == "all" else 1 / int(p.split("/")[1]) for p in rest[3].split(",")) \
            if len(rest) > 3 else POINTS                                         # e.g. 1/16,all
        study(Path(out), rest[0], int(rest[1]) if len(rest) > 1 else 3, arms, points)
    elif mode == "fresh":
        fresh(Path(out), rest[0], int(rest[1]) if len(rest) > 1 else 500)
    elif mode == "report":
        report(Path(out), Path(rest[0]) if rest else None)
    elif mode == "report-fresh":
        report(Path(out), n_fresh=int(rest[0]) if rest else 500)
    else:
        raise SystemExit(f"unknown mode {mode!r}; choose curves, study, report, fresh or report-fresh")
